"""The console's server-side drawings and log cutting, without a server."""

from __future__ import annotations

import pytest

from armillary.console.graphs import dag, histogram, layers
from armillary.console.routes_jobs import spec_diff, utf8_prefix


def test_tasks_are_layered_by_their_deepest_upstream() -> None:
    tasks = [
        {"name": "a"},
        {"name": "b", "needs": ["a"]},
        {"name": "c", "needs": ["a", "b"]},
        {"name": "d", "needs": ["ghost"]},  # an unknown upstream is ignored
    ]
    assert layers(tasks) == {"a": 0, "b": 1, "c": 2, "d": 0}
    graph = dag(tasks)
    assert [(n.name, n.layer, n.row) for n in graph.nodes] == [
        ("a", 0, 0),
        ("b", 1, 0),
        ("c", 2, 0),
        ("d", 0, 1),
    ]
    assert len(graph.edges) == 3
    # Every edge runs left to right, from a node's right side to the next one's left.
    assert all(x1 < x2 for x1, _, x2, _ in graph.edges)
    assert graph.width >= max(n.x for n in graph.nodes) + 150
    # Each edge's SVG path starts at its source's right side and ends at its target.
    for (x1, y1, x2, y2), curve in zip(graph.edges, graph.curves, strict=True):
        assert curve.startswith(f"M {x1} {y1} C ")
        assert curve.endswith(f", {x2} {y2}")


def test_a_cycle_does_not_hang_and_an_empty_spec_draws_nothing() -> None:
    looped = layers([{"name": "a", "needs": ["b"]}, {"name": "b", "needs": ["a"]}])
    assert set(looped) == {"a", "b"}
    assert dag([]).nodes == []
    assert dag(None).nodes == []
    assert dag([{"type": "noop"}]).nodes == []  # a task without a name is not drawn


def test_a_jobs_task_states_colour_its_nodes_and_long_names_are_cut() -> None:
    graph = dag([{"name": "x" * 40, "status": "running"}, {"name": "y"}])
    assert [n.state for n in graph.nodes] == ["running", "spec"]
    assert graph.nodes[0].label.endswith("…")
    assert len(graph.nodes[0].label) == 18


def test_a_histogram_and_top_values_become_bars_scaled_to_the_highest() -> None:
    numbers = histogram({"name": "t", "histogram": {"edges": [0, 0.5, 1.0], "counts": [4, 2]}})
    assert numbers is not None
    assert [b.height for b in numbers.bars] == [58, 29]
    assert [b.label for b in numbers.bars] == ["0 to 0.5", "0.5 to 1"]
    assert numbers.summary == "histogram of t: 0 to 0.5: 4, 0.5 to 1: 2"
    labels = histogram(
        {"name": "l", "top_values": [{"value": "a", "count": 3}, {"value": None, "count": 1}]}
    )
    assert labels is not None
    assert [b.label for b in labels.bars] == ["a", "(null)"]
    assert histogram({"name": "empty"}) is None


@pytest.mark.parametrize(
    ("text", "cut"),
    [("abc", 0), ("aé", 1), ("a€", 1), ("a€", 2), ("a😀", 1), ("a😀", 3), ("é€😀", 0)],
)
def test_a_log_piece_never_ends_inside_a_character(text: str, cut: int) -> None:
    data = text.encode()
    piece = utf8_prefix(data[: len(data) - cut])
    piece.decode("utf-8")  # would raise on a cut sequence
    assert data.startswith(piece)
    assert len(data) - cut - len(piece) < 4


def test_a_spec_diff_marks_added_and_removed_lines() -> None:
    kinds = spec_diff({"tasks": ["a", "b"]}, {"tasks": ["a", "c"]}, "v1", "v2")
    assert ("del", '-    "b"') in kinds
    assert ("add", '+    "c"') in kinds
    assert kinds[0] == ("head", "--- v1")
    assert spec_diff({"x": 1}, {"x": 1}, "v1", "v2") == []
