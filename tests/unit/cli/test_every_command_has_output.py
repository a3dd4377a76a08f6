"""Every command a script can run takes ``--output table|json|yaml`` (``-o``, and
``ARMILLARY_OUTPUT``): the whole command tree is walked, so a new command without it fails
here. ``-o`` means the format in every command, and so does ``--output`` but in
``backup create``, where issue 17 gives it the backup's directory."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer
import typer.main

from armillary.cli.main import app

# Long-running processes: they print no result, only their log until SIGTERM, whose format
# is ARMILLARY_LOG_JSON's (one JSON object per line by default). A result format would have
# nothing to format.
SERVER_PROCESSES = frozenset({"up", "worker", "scheduler", "serve", "gateway"})
# Issue 17 spells the backup command `armillary backup create --output DIR`: there the
# directory keeps `--output` and the format is `-o`/`--format`.
FORMAT_OPTION = {"backup create": "--format"}
FORMATS = ("table", "json", "yaml")


def _leaves(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    children = getattr(command, "commands", None)
    if children is None:
        yield " ".join(path), command
        return
    for name, child in children.items():
        yield from _leaves(child, (*path, name))


LEAVES = dict(_leaves(typer.main.get_command(app)))


def test_the_walk_finds_the_whole_tree() -> None:
    # Guards the walk itself: nested groups are reached, and the exemptions still exist.
    assert {"jobs logs", "events dead-letters list", "db upgrade", "login"} <= set(LEAVES)
    assert set(LEAVES) >= SERVER_PROCESSES
    assert len(LEAVES) > 35


@pytest.mark.parametrize("path", sorted(set(LEAVES) - SERVER_PROCESSES))
def test_command_takes_output_json_yaml_table(path: str) -> None:
    command = LEAVES[path]
    spelled = FORMAT_OPTION.get(path, "--output")
    [option] = [p for p in command.params if spelled in p.opts]
    assert "-o" in option.opts
    assert option.envvar == "ARMILLARY_OUTPUT"
    context = command.make_context(path, [], resilient_parsing=True)
    assert option.default == "table"
    for name in FORMATS:
        assert option.process_value(context, name).value == name
        assert option.process_value(context, name.upper()).value == name
    with pytest.raises(typer.BadParameter):
        option.process_value(context, "copy.csv")


@pytest.mark.parametrize("path", sorted(LEAVES))
def test_no_two_options_of_a_command_share_a_name(path: str) -> None:
    # Two options spelled alike: the parser silently keeps one (`backup create --output DIR`
    # once reached the format option and was refused).
    names = [name for p in LEAVES[path].params for name in (*p.opts, *p.secondary_opts)]
    assert len(names) == len(set(names)), names


def test_server_processes_take_no_output_option() -> None:
    # If one of them gains a result to print, it leaves the exemption list.
    for path in SERVER_PROCESSES:
        assert not [p for p in LEAVES[path].params if "--output" in p.opts], path
