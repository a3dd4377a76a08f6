"""The doctor's ownership rules: exact keys and prefixes (nested ones too), and the prefixes
the services claim match the keys they write."""

from __future__ import annotations

import uuid
from datetime import date

from armillary.kit.storage.doctor import References, _Owned
from armillary.serving.predict.sampling import sample_key
from armillary.serving.storage_references import samples_prefix
from armillary.workflows.logs.store import chunk_key
from armillary.workflows.storage_references import log_prefix


def test_exact_keys_and_prefixes_are_owned_and_nothing_else() -> None:
    owned = _Owned(
        References(
            keys={"projects/p/datasets/d/v.csv": "dataset"},
            prefixes={"projects/p/jobs/j/t/log-0001-", "projects/p/jobs/", "projects/q/x/"},
        )
    )
    assert owned("projects/p/datasets/d/v.csv")
    assert not owned("projects/p/datasets/d/v.csv.bak")
    # Nested under a broader prefix, and a sibling that only shares characters.
    assert owned("projects/p/jobs/j/t/log-0002-000001.txt")
    assert owned("projects/q/x/1")
    assert not owned("projects/q/xy/1")
    assert not owned("projects/p/models/m/v/model.onnx")
    assert not _Owned(References())("anything")


def test_service_prefixes_cover_the_keys_they_write() -> None:
    project, deployment, job = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    key = sample_key(project, deployment, date(2026, 1, 2), uuid.uuid4())
    assert key.startswith(samples_prefix(project, deployment))
    assert chunk_key(project, job, "train", 3, 12).startswith(log_prefix(project, job, "train", 3))
    assert not chunk_key(project, job, "train", 13, 1).startswith(
        log_prefix(project, job, "train", 1)
    )
