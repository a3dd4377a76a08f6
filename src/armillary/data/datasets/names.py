"""User-supplied names: dataset names and upload filenames. Never used to build object keys
(keys come from ids), but still refused when they look like path tricks."""

from __future__ import annotations

import re
from urllib.parse import unquote

from armillary.kit.errors import BadRequest

_DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class InvalidName(BadRequest):
    title = "Invalid name"


def _decoded_forms(value: str) -> list[str]:
    """The value and what repeated percent-decoding makes of it (``%252e`` → ``%2e`` → ``.``)."""
    forms = [value]
    for _ in range(3):
        decoded = unquote(forms[-1])
        if decoded == forms[-1]:
            break
        forms.append(decoded)
    return forms


def _looks_like_a_path(value: str) -> bool:
    for form in _decoded_forms(value):
        if _CONTROL.search(form) or "/" in form or "\\" in form or ".." in form:
            return True
        if re.match(r"^[A-Za-z]:", form):
            return True
    return False


def check_dataset_name(name: str) -> str:
    if _looks_like_a_path(name) or not _DATASET_NAME.match(name) or "%" in name:
        raise InvalidName(
            "Dataset names are 1-128 letters, digits, '.', '_' or '-', starting with a letter "
            "or digit, with no path separators or '..'"
        )
    return name


def check_filename(filename: str | None) -> str | None:
    if filename is None or filename == "":
        return None
    if len(filename) > 255 or _looks_like_a_path(filename):
        raise InvalidName("The uploaded file's name must be a plain file name, not a path")
    return filename
