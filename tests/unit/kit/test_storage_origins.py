"""The object store's origin that sandboxes' proxies may reach for presigned transfers."""

from __future__ import annotations

from pathlib import Path

from armillary.engine import local_executor
from armillary.kit.storage import StorageSettings
from armillary.workflows.settings import WorkflowSettings


def test_a_configured_endpoint_is_the_presigned_origin() -> None:
    settings = StorageSettings(
        backend="s3",
        s3_bucket="b",
        s3_endpoint_url="http://minio.internal:9000",
        s3_allow_http=True,
    )
    assert settings.presigned_origins() == {"http://minio.internal:9000"}


def test_an_endpoint_without_a_port_gets_both_spellings() -> None:
    settings = StorageSettings(backend="s3", s3_bucket="b", s3_endpoint_url="https://store.corp")
    assert settings.presigned_origins() == {"https://store.corp", "https://store.corp:443"}


def test_aws_and_the_local_store_have_no_fixed_origin() -> None:
    assert StorageSettings(backend="s3", s3_bucket="b").presigned_origins() is None
    assert StorageSettings(backend="local").presigned_origins() is None


def test_the_worker_executor_is_given_the_store_origin(tmp_path: Path) -> None:
    storage = StorageSettings(
        backend="s3", s3_bucket="b", s3_endpoint_url="http://10.0.0.5:9000", s3_allow_http=True
    )
    executor = local_executor(tmp_path / "work", WorkflowSettings(), storage)
    assert executor.redirect_origins == {"http://10.0.0.5:9000"}
