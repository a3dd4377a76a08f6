"""How commands print what they found: a table for people, JSON or YAML for scripts.

Every command that prints data takes the same ``--output`` option and hands its data to
:func:`print_data`; only for ``table`` does it draw. Tables go through :func:`fit_table`, so
an id or a metric is never cut with an ellipsis: columns that matter less are left out when
the terminal is narrow, and what still does not fit wraps.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

_TERMINALS: list[tuple[Console, dict[str, Any]]] = []


def terminal(**options: Any) -> Console:
    """A Rich console for a command module, read again from the environment (``COLUMNS``,
    ``NO_COLOR``, whether stdout is a terminal) at the start of every command
    (:func:`refresh_terminals`): Rich reads ``COLUMNS`` once, when a console is made, and one
    process may run many commands (a notebook, the tests)."""
    made = Console(**options)
    _TERMINALS.append((made, options))
    return made


def refresh_terminals() -> None:
    """Re-read the terminal for every console made by :func:`terminal`."""
    for made, options in _TERMINALS:
        made.__init__(**options)  # type: ignore[misc]


OUTPUT_ENV = "ARMILLARY_OUTPUT"
# The narrowest a folded column may get while ids beside it stay whole.
_FOLDED_MINIMUM = 6


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


OutputOption = Annotated[
    OutputFormat,
    typer.Option(
        "--output",
        "-o",
        case_sensitive=False,
        envvar=OUTPUT_ENV,
        help="table (for people), or json or yaml (for scripts: every field, nothing else "
        "on stdout)",
    ),
]


def print_data(output: OutputFormat, data: Any) -> bool:
    """Print ``data`` on stdout as JSON or YAML and return ``True``; return ``False`` for
    ``table``, which the command draws itself."""
    if output is OutputFormat.JSON:
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
    elif output is OutputFormat.YAML:
        import yaml  # only scripts that ask for YAML pay for it

        sys.stdout.write(
            yaml.safe_dump(_plain(data), sort_keys=False, allow_unicode=True, width=1_000_000)
        )
    else:
        return False
    sys.stdout.flush()
    return True


def _plain(data: Any) -> Any:
    # YAML's safe dumper takes only plain types; JSON's round trip turns the rest into them.
    return json.loads(json.dumps(data, default=str))


def fit_table(
    table: Table, console: Console, *, optional: Sequence[str] = (), keep_whole: Sequence[str] = ()
) -> list[str]:
    """Make ``table`` fit ``console``'s width without an ellipsis in any cell.

    Columns named in ``optional`` (least useful first) are removed one by one while the table
    is wider than the console; cells of the rest wrap instead of being cut. Columns named in
    ``keep_whole`` (ids) are not wrapped while others can give way. Returns the headers of the
    columns that were left out.
    """
    for column in table.columns:
        column.overflow = "fold"
        if column.header in keep_whole:
            column.no_wrap = True
    dropped: list[str] = []
    for header in optional:
        if _natural_width(table, console) <= console.width:
            break
        for column in table.columns:
            if column.header == header:
                table.columns.remove(column)
                dropped.append(header)
                break
    for index, column in enumerate(table.columns):
        column._index = index  # Rich draws cells by the column's position
    if _width_with_whole_ids(table) > console.width:
        # Too narrow for whole ids beside narrow folded columns: ids fold too, rather than
        # crowd the other columns out of sight.
        for column in table.columns:
            column.no_wrap = False
    return dropped


def _natural_width(table: Table, console: Console) -> int:
    options = console.options.update_width(1_000_000)
    return Measurement.get(console, options, table).maximum


def _width_with_whole_ids(table: Table) -> int:
    # Each column costs its padding and a border; a folded one at least a few characters.
    width = 1
    for column in table.columns:
        if column.no_wrap:
            cells = [*column.cells, column.header]
            width += max(_cell_width(cell) for cell in cells)
        else:
            width += _FOLDED_MINIMUM
        width += 3
    return width


def _cell_width(cell: object) -> int:
    if isinstance(cell, str):
        return Text.from_markup(cell).cell_len
    return cell.cell_len if isinstance(cell, Text) else 0
