"""The local object store exports the free share of its file system (for the low-disk
alert); the gauge is read at scrape time."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from armillary.kit.storage import LocalObjectStore, StorageSettings


def test_a_local_store_exports_its_free_disk_share(tmp_path: Path) -> None:
    LocalObjectStore(
        tmp_path / "objects", StorageSettings(backend="local"), signing_secret="s" * 32
    )
    ratio = REGISTRY.get_sample_value("armillary_object_store_free_ratio")
    usage = shutil.disk_usage(tmp_path)
    assert ratio is not None
    assert 0 < ratio <= 1
    assert ratio == pytest.approx(usage.free / usage.total, abs=0.01)
