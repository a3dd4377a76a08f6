"""Reading spec documents: YAML through safe_load only, JSON, and size limits."""

from __future__ import annotations

import pytest

from armillary.workflows.specs import documents
from armillary.workflows.specs.documents import DocumentError, format_for_filename, parse_document


def test_yaml_and_json_read_to_the_same_data() -> None:
    yaml_text = "name: x\ntasks:\n  - name: a\n    type: noop\n"
    json_text = '{"name": "x", "tasks": [{"name": "a", "type": "noop"}]}'
    assert parse_document(yaml_text.encode(), "yaml") == parse_document(json_text, "json")


def test_yaml_never_constructs_objects() -> None:
    with pytest.raises(DocumentError, match="not valid YAML"):
        parse_document(b"!!python/object/apply:os.system ['true']", "yaml")


@pytest.mark.parametrize(
    ("content", "fmt", "message"),
    [
        (b"{", "json", "not valid JSON"),
        (b"a: [", "yaml", "not valid YAML"),
        (b"\xff\xfe", "json", "not UTF-8"),
    ],
)
def test_unreadable_documents(content: bytes, fmt: documents.DocumentFormat, message: str) -> None:
    with pytest.raises(DocumentError, match=message):
        parse_document(content, fmt)


def test_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(documents, "MAX_DOCUMENT_BYTES", 10)
    with pytest.raises(DocumentError, match="larger than"):
        parse_document(b'{"name": "long enough"}', "json")


def test_alias_expansion_is_bounded() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 8):
        refs = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"a{level}: &a{level} [{refs}]")
    with pytest.raises(DocumentError, match="too large"):
        parse_document("\n".join(lines), "yaml")


def test_format_follows_the_file_name() -> None:
    assert format_for_filename("flow.JSON") == "json"
    assert format_for_filename("flow.yaml") == "yaml"
    assert format_for_filename("flow") == "yaml"
