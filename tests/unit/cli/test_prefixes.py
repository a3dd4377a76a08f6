"""Id prefixes resolve as git resolves abbreviated hashes."""

from __future__ import annotations

import pytest

from armillary.cli.prefixes import SHOWN_CANDIDATES, PrefixError, is_whole_id, resolve

JOBS = [
    ("6aa092bb-1111-4000-8000-000000000001", "demo/nightly v1"),
    ("6aa0f2cc-2222-4000-8000-000000000002", "demo/nightly v2"),
    ("7bb11111-3333-4000-8000-000000000003", "demo/weekly v1"),
]


def test_a_unique_prefix_is_the_whole_id() -> None:
    assert resolve("7", JOBS, "job") == JOBS[2][0]
    assert resolve("6aa09", JOBS, "job") == JOBS[0][0]
    # Case and dashes do not matter.
    assert resolve("6AA0F2CC2222", JOBS, "job") == JOBS[1][0]
    assert resolve(JOBS[1][0], JOBS, "job") == JOBS[1][0]


def test_an_ambiguous_prefix_lists_the_candidates() -> None:
    with pytest.raises(PrefixError) as caught:
        resolve("6aa0", JOBS, "job")
    message = str(caught.value)
    assert "ambiguous" in message
    assert "2 jobs" in message
    assert f"{JOBS[0][0]}  demo/nightly v1" in message
    assert f"{JOBS[1][0]}  demo/nightly v2" in message
    assert JOBS[2][0] not in message


def test_a_long_candidate_list_is_shortened() -> None:
    many = [(f"abc{i:05d}-0000-4000-8000-000000000000", "") for i in range(SHOWN_CANDIDATES + 5)]
    with pytest.raises(PrefixError, match=r"and 5 more"):
        resolve("abc", many, "job")


@pytest.mark.parametrize("prefix", ["8", "6aa1", "zz"])
def test_an_unknown_prefix_is_not_found(prefix: str) -> None:
    with pytest.raises(PrefixError, match=f"No job id starts with '{prefix}'"):
        resolve(prefix, JOBS, "job")


def test_an_empty_prefix_matches_nothing() -> None:
    with pytest.raises(PrefixError, match="empty"):
        resolve(" ", JOBS, "job")


def test_whole_ids_need_no_lookup() -> None:
    assert is_whole_id(JOBS[0][0])
    assert is_whole_id(JOBS[0][0].upper())
    assert not is_whole_id("6aa092bb")
    assert not is_whole_id(JOBS[0][0] + "0")
