"""Signing key ids are safe to type on a command line: `armillary keys retire <kid>` read a
base64url id that began with "-" as an option (one key in 64)."""

from __future__ import annotations

import re

from armillary.identity.keys.service import new_kid


def test_key_ids_are_hex_and_unique() -> None:
    kids = {new_kid() for _ in range(2000)}
    assert len(kids) == 2000
    assert all(re.fullmatch(r"[0-9a-f]{32}", kid) for kid in kids)
