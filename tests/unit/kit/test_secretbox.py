"""Secrets at rest: AES-GCM under a key derived per purpose, bound to associated data,
versioned, with old platform secrets still opening old values."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from armillary.kit.secretbox import SecretBox, SecretBoxError, derive_key, mask

KEY = "platform-secret-" + "k" * 40


def test_round_trip_and_fresh_nonce() -> None:
    box = SecretBox(KEY, "alerts")
    one = box.encrypt("https://hooks.example/T000/B000/XXXX")
    two = box.encrypt("https://hooks.example/T000/B000/XXXX")
    assert one != two  # a new nonce every time
    assert one.startswith("v1.")
    assert "hooks.example" not in one
    assert box.decrypt_text(one) == "https://hooks.example/T000/B000/XXXX"
    assert box.decrypt(box.encrypt(b"\x00\x01")) == b"\x00\x01"


def test_purpose_and_key_separate_values() -> None:
    token = SecretBox(KEY, "alerts").encrypt("s3cr3t")
    with pytest.raises(SecretBoxError):
        SecretBox(KEY, "other-purpose").decrypt(token)
    with pytest.raises(SecretBoxError):
        SecretBox("another-secret-" + "z" * 40, "alerts").decrypt(token)
    assert derive_key(KEY, "a") != derive_key(KEY, "b")
    assert len(derive_key(KEY, "a")) == 32
    with pytest.raises(ValueError, match="purpose"):
        derive_key(KEY, "")


def test_associated_data_binds_the_value_to_its_row() -> None:
    box = SecretBox(KEY, "alerts")
    token = box.encrypt("s3cr3t", associated_data=b"row-1")
    assert box.decrypt_text(token, associated_data=b"row-1") == "s3cr3t"
    with pytest.raises(SecretBoxError):
        box.decrypt(token, associated_data=b"row-2")
    with pytest.raises(SecretBoxError):
        box.decrypt(token)


def test_tampering_and_malformed_values_are_refused() -> None:
    box = SecretBox(KEY, "alerts")
    token = box.encrypt("s3cr3t")
    raw = bytearray(base64.urlsafe_b64decode(token[3:]))
    raw[-1] ^= 1
    tampered = "v1." + base64.urlsafe_b64encode(bytes(raw)).decode()
    for bad in [tampered, "v2." + token[3:], "no-version", "v1.!!!", "v1." + "A" * 8, ""]:
        with pytest.raises(SecretBoxError):
            box.decrypt(bad)


def test_rotated_platform_secret_still_opens_old_values() -> None:
    old = SecretBox("old-secret-" + "o" * 40, "alerts")
    token = old.encrypt("s3cr3t")
    rotated = SecretBox(KEY, "alerts", previous=["old-secret-" + "o" * 40])
    assert rotated.decrypt_text(token) == "s3cr3t"
    # New values are written under the current key only.
    with pytest.raises(SecretBoxError):
        old.decrypt(rotated.encrypt("new"))


def test_mask_shows_only_the_last_characters() -> None:
    assert mask("https://hooks.example/services/T0/B0/abcd1234") == "…1234"
    assert mask("short") == "…"
    assert mask("") == "…"


def test_alert_secrets_survive_a_rotation_of_the_platform_secret(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from armillary.kit.settings import Settings
    from armillary.workflows.alerts.delivery import Alerts
    from armillary.workflows.settings import WorkflowSettings

    old_secret, new_secret = "o" * 48, "n" * 48
    before = Settings(home=tmp_path, secret_key=old_secret)  # type: ignore[arg-type]
    sealed = Alerts.create(
        SimpleNamespace(settings=before, db=None), WorkflowSettings()
    ).box.encrypt(  # type: ignore[arg-type]
        "https://hooks.example/secret"
    )
    rotated = Settings(
        home=tmp_path,
        secret_key=new_secret,  # type: ignore[arg-type]
        previous_secret_keys=[old_secret],  # type: ignore[list-item]
    )
    box = Alerts.create(SimpleNamespace(settings=rotated, db=None), WorkflowSettings()).box  # type: ignore[arg-type]
    assert box.decrypt_text(sealed) == "https://hooks.example/secret"
    forgotten = Settings(home=tmp_path, secret_key=new_secret)  # type: ignore[arg-type]
    with pytest.raises(SecretBoxError):
        Alerts.create(SimpleNamespace(settings=forgotten, db=None), WorkflowSettings()).box.decrypt(  # type: ignore[arg-type]
            sealed
        )


def test_reseal_moves_a_value_to_the_current_key_once() -> None:
    old = SecretBox("o" * 48, "purpose")
    sealed = old.encrypt("value", associated_data=b"row-1")
    box = SecretBox("n" * 48, "purpose", previous=["o" * 48])
    resealed = box.reseal(sealed, associated_data=b"row-1")
    assert resealed is not None
    assert resealed != sealed
    # Now the current key alone opens it, and there is nothing left to do.
    current = SecretBox("n" * 48, "purpose")
    assert current.decrypt_text(resealed, associated_data=b"row-1") == "value"
    assert box.reseal(resealed, associated_data=b"row-1") is None
    # Bound to its row: resealing under other associated data fails like decrypting does.
    with pytest.raises(SecretBoxError):
        box.reseal(sealed, associated_data=b"row-2")
