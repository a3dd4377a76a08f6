"""How ``armillary jobs logs`` prints a task's output: as written for people, records for
scripts.

A log streams (``--follow``), so the script formats stream too: ``json`` is JSON Lines, one
``{"line": n, "text": ...}`` object per line as it arrives (``jq -r .text``), and ``yaml`` is a
YAML list of the same objects written item by item, so whatever has been printed so far is
valid YAML. A chunk from the server may end mid-line: a record is printed once its line is
whole, and an unfinished last line when the log ends.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from armillary.cli.output import OutputFormat


class LogPrinter:
    """Prints chunks of a task's output in one of the ``--output`` formats."""

    def __init__(self, output: OutputFormat, stream: TextIO | None = None) -> None:
        self._output = output
        self._stream = stream or sys.stdout
        self._pending = ""
        self._lines = 0

    def write(self, chunk: str) -> None:
        """Print what ``chunk`` completes: the text itself for ``table``, else each whole
        line as a record."""
        if self._output is OutputFormat.TABLE:
            self._stream.write(chunk)
        else:
            *whole, self._pending = (self._pending + chunk).split("\n")
            for text in whole:
                self._record(text)
        self._stream.flush()

    def close(self) -> None:
        """The log ended: print its unfinished last line, and an empty YAML list for a log
        with no line at all (so a YAML reader still gets a list)."""
        if self._pending:
            self._record(self._pending)
            self._pending = ""
        if self._output is OutputFormat.YAML and self._lines == 0:
            self._stream.write("[]\n")
        self._stream.flush()

    def _record(self, text: str) -> None:
        self._lines += 1
        record: dict[str, Any] = {"line": self._lines, "text": text.removesuffix("\r")}
        if self._output is OutputFormat.JSON:
            self._stream.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            import yaml  # only scripts that ask for YAML pay for it

            self._stream.write(
                yaml.safe_dump([record], sort_keys=False, allow_unicode=True, width=1_000_000)
            )
