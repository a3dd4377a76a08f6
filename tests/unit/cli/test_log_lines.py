"""``jobs logs --output``: the text as written for people; JSON Lines or a YAML list of
``{line, text}`` records for scripts, printed as whole lines arrive, whatever the chunking."""

from __future__ import annotations

import io
import json

import yaml

from armillary.cli.log_lines import LogPrinter
from armillary.cli.output import OutputFormat

# Chunks as a stream delivers them: cut mid-line, a CRLF, a blank line, no final newline.
CHUNKS = ["first li", "ne\nsecond\r\n", "\nthir", "d ü"]
LINES = ["first line", "second", "", "third ü"]


def _printed(output: OutputFormat, chunks: list[str]) -> str:
    stream = io.StringIO()
    printer = LogPrinter(output, stream)
    for chunk in chunks:
        printer.write(chunk)
    printer.close()
    return stream.getvalue()


def _records(lines: list[str]) -> list[dict[str, object]]:
    return [{"line": n, "text": text} for n, text in enumerate(lines, start=1)]


def test_table_prints_the_text_as_written() -> None:
    assert _printed(OutputFormat.TABLE, CHUNKS) == "".join(CHUNKS)


def test_json_is_one_record_per_line() -> None:
    printed = _printed(OutputFormat.JSON, CHUNKS)
    assert [json.loads(line) for line in printed.splitlines()] == _records(LINES)


def test_yaml_is_a_list_of_the_same_records() -> None:
    assert yaml.safe_load(_printed(OutputFormat.YAML, CHUNKS)) == _records(LINES)


def test_a_record_is_printed_as_soon_as_its_line_is_whole() -> None:
    stream = io.StringIO()
    printer = LogPrinter(OutputFormat.JSON, stream)
    printer.write("half")
    assert stream.getvalue() == ""
    printer.write(" done\nnext")
    assert [json.loads(line)["text"] for line in stream.getvalue().splitlines()] == ["half done"]


def test_an_empty_log_is_no_record() -> None:
    assert _printed(OutputFormat.JSON, []) == ""  # zero JSON Lines records
    assert yaml.safe_load(_printed(OutputFormat.YAML, [])) == []
