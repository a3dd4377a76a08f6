"""``ingest`` -> ``transform`` -> ``write_dataset`` end to end, against a stand-in of the
platform API (an ``httpx.MockTransport``), writing real Parquet; and :class:`TaskApi`'s calls.

The stand-in checks what the real API will: every call to it carries the job's bearer token,
and nothing else (the object store behind a redirect or a presigned URL) ever sees it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import threading
from collections.abc import Iterator
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from armillary.contracts.data_tasks import (
    IngestParams,
    TableOutputs,
    WriteDatasetOutputs,
    WriteDatasetParams,
)
from armillary.contracts.tasks import TaskContext
from armillary.data import tasks
from armillary.data.ingest.ssrf import BlockedDestination, FetchFailed, SourceTooLarge
from armillary.sdk.errors import ChecksumMismatch
from armillary.sdk.task_api import TaskApi, TaskApiError

API = "http://api.test"
STORE = "http://store.test"
TOKEN = "job-token-" + "s" * 40
PROJECT = "3f0c5a8e-project"
JOB = "job-1"
IRIS_COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width", "species"]


@functools.cache
def iris_csv() -> bytes:
    """The iris data set as CSV (scikit-learn's bundled copy when installed)."""
    try:
        from sklearn.datasets import load_iris
    except ImportError:  # pragma: no cover - scikit-learn is a dev dependency
        rows = [[5.1, 3.5, 1.4, 0.2, "setosa"], [7.0, 3.2, 4.7, 1.4, "versicolor"]] * 75
    else:
        bunch = load_iris()
        names = [str(n) for n in bunch.target_names]
        rows = [
            [*map(float, features), names[int(target)]]
            for features, target in zip(bunch.data, bunch.target, strict=True)
        ]
    frame = pl.DataFrame(rows, schema=IRIS_COLUMNS, orient="row")
    return frame.write_csv().encode()


class FakePlatform:
    """The API endpoints the data tasks call, and an object store behind presigned URLs."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        # name -> list of versions {number, format, bytes, lineage, ...}
        self.datasets: dict[str, dict[str, Any]] = {}
        self.artifacts: dict[tuple[str, str, str], bytes] = {}
        self.objects: dict[str, bytes] = {}
        self.quality: dict[tuple[str, int], Any] = {}
        self.presigned: list[str] = []
        # The job's task runs as GET /api/v1/jobs/{id} shows them (name, type, needs, outputs).
        self.job_tasks: list[dict[str, Any]] = []

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def add_version(self, name: str, content: bytes, fmt: str, lineage: Any = None) -> int:
        dataset = self.datasets.setdefault(name, {"versions": []})
        number = len(dataset["versions"]) + 1
        dataset["versions"].append(
            {"number": number, "format": fmt, "bytes": content, "lineage": lineage or {}}
        )
        return number

    def version_out(self, name: str, version: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": f"v-{name}-{version['number']}",
            "dataset": name,
            "dataset_id": f"d-{name}",
            "number": version["number"],
            "format": version["format"],
            "size_bytes": len(version["bytes"]),
            "sha256": hashlib.sha256(version["bytes"]).hexdigest(),
            "lineage": version["lineage"],
        }

    def upload_artifacts(self, context: TaskContext) -> None:
        """What the worker does after a task succeeds."""
        for path in context.artifacts_dir.iterdir():
            self.artifacts[(context.job_id, context.task, path.name)] = path.read_bytes()

    def api_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.host == "api.test"]

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.host == "store.test":
            assert "authorization" not in request.headers, "the token leaked to the store"
            key = request.url.path.lstrip("/")
            if key not in self.objects:
                return httpx.Response(404)
            return httpx.Response(200, content=self.objects[key])
        assert request.headers.get("authorization") == f"Bearer {TOKEN}"
        path = request.url.path
        base = f"/api/v1/projects/{PROJECT}"
        if path == f"/api/v1/jobs/{JOB}" and request.method == "GET":
            return httpx.Response(
                200,
                json={
                    "workflow": "flow",
                    "workflow_id": "w-1",
                    "version": 4,
                    "tasks": self.job_tasks,
                },
            )
        if found := re.fullmatch(r"/api/v1/jobs/([^/]+)/tasks/([^/]+)/artifacts/([^/]+)", path):
            artifact = (found[1], found[2], found[3])
            if artifact not in self.artifacts:
                return problem(404, "Not found", "no such artifact")
            # As the real API may: redirect to a presigned URL of the store.
            object_key = "jobs/" + "/".join(artifact)
            self.objects[object_key] = self.artifacts[artifact]
            return httpx.Response(307, headers={"Location": f"{STORE}/{object_key}"})
        if path == f"{base}/external-objects/presign" and request.method == "POST":
            uri = json.loads(request.content)["uri"]
            key = "external/" + uri.removeprefix("s3://")
            self.presigned.append(uri)
            return httpx.Response(
                200, json={"url": f"{STORE}/{key}?X-Amz-Signature=abc", "expires_at": "soon"}
            )
        if path == f"{base}/datasets" and request.method == "POST":
            body = json.loads(request.content)
            if body["name"] in self.datasets:
                return problem(409, "Conflict", "taken")
            self.datasets[body["name"]] = {"versions": [], "description": body["description"]}
            return httpx.Response(201, json={"name": body["name"], "latest_version": None})
        match = re.fullmatch(
            rf"{base}/datasets/([^/]+)(/versions(?:/(\d+)(/content|/quality)?)?)?", path
        )
        if match is None:
            return problem(404, "Not found", path)
        name, versions, number, leaf = match[1], match[2], match[3], match[4]
        if name not in self.datasets:
            return problem(404, "Dataset not found", f"no dataset {name!r}")
        found = self.datasets[name]["versions"]
        if versions is None:
            latest = found[-1]["number"] if found else None
            return httpx.Response(200, json={"name": name, "latest_version": latest})
        if number is None and request.method == "POST":
            return self.upload(name, request)
        version = next((v for v in found if v["number"] == int(number or 0)), None)
        if version is None:
            return problem(404, "Version not found", "no such version")
        if leaf == "/content":
            key = f"datasets/{name}/{number}"
            self.objects[key] = version["bytes"]
            return httpx.Response(307, headers={"Location": f"{STORE}/{key}?sig=1"})
        if leaf == "/quality" and request.method == "PUT":
            self.quality[(name, int(number or 0))] = json.loads(request.content)
            return httpx.Response(204)
        return httpx.Response(200, json=self.version_out(name, version))

    def upload(self, name: str, request: httpx.Request) -> httpx.Response:
        content_type = request.headers["content-type"]
        assert content_type.startswith("multipart/form-data")
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + request.read()
        )
        fields: dict[str, Any] = {}
        for part in message.iter_parts():
            field = str(part.get_param("name", header="content-disposition"))
            fields[field] = part.get_payload(decode=True)
        lineage = json.loads(fields["lineage"])
        self.add_version(name, fields["file"], fields["format"].decode(), lineage)
        version = self.datasets[name]["versions"][-1]
        return httpx.Response(201, json=self.version_out(name, version))


def problem(status: int, title: str, detail: str) -> httpx.Response:
    return httpx.Response(
        status,
        json={"type": "about:blank", "title": title, "status": status, "detail": detail},
        headers={"Content-Type": "application/problem+json"},
    )


@pytest.fixture
def platform(monkeypatch: pytest.MonkeyPatch) -> FakePlatform:
    fake = FakePlatform()
    monkeypatch.setattr(tasks, "_api_transport", fake.transport)
    monkeypatch.setattr(tasks, "_presigned_transport", fake.transport)
    monkeypatch.delenv("ARMILLARY_DATA_INGEST_ALLOW_NETWORKS", raising=False)
    return fake


def make_context(tmp_path: Path, task: str) -> TaskContext:
    root = tmp_path / task
    (root / "artifacts").mkdir(parents=True)
    (root / "work").mkdir()
    return TaskContext(
        job_id=JOB,
        project_id=PROJECT,
        task=task,
        attempt_id=f"{task}-attempt-1",
        workdir=root / "work",
        artifacts_dir=root / "artifacts",
        api_url=API,
        _token=TOKEN,
    )


def run(
    platform: FakePlatform,
    tmp_path: Path,
    function: Any,
    task: str,
    params: dict[str, Any],
    inputs: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    context = make_context(tmp_path, task)
    outputs: dict[str, Any] = function(params, inputs or {}, context)
    assert TOKEN not in json.dumps(outputs)
    platform.upload_artifacts(context)
    kind = function.__name__.removeprefix("run_")
    run = {"name": task, "type": kind, "needs": list(inputs or {}), "outputs": outputs}
    platform.job_tasks.append(run)
    return outputs


def test_dataset_to_transform_to_new_dataset(platform: FakePlatform, tmp_path: Path) -> None:
    platform.add_version("iris", iris_csv(), "csv")

    ingested = run(platform, tmp_path, tasks.run_ingest, "load-iris", {"dataset": "iris"})
    TableOutputs.model_validate(ingested)
    assert ingested["table"] == {"job_id": JOB, "task": "load-iris", "name": "table.parquet"}
    assert ingested["rows"] == 150
    assert [c["name"] for c in ingested["columns"]] == IRIS_COLUMNS
    assert ingested["columns"][0]["dtype"] == "Float64"
    assert ingested["dataset"] == {"name": "iris", "version": 1}
    stored = platform.artifacts[(JOB, "load-iris", "table.parquet")]
    assert hashlib.sha256(stored).hexdigest() == ingested["sha256"]

    summary = run(
        platform,
        tmp_path,
        tasks.run_transform,
        "summarise",
        {
            "inputs": ["load-iris"],
            "sql": "SELECT species, round(avg(petal_length), 3) AS mean_petal, count(*) AS n "
            "FROM load_iris GROUP BY species ORDER BY species",
        },
        {"load-iris": ingested},
    )
    assert summary["rows"] == 3
    assert [c["name"] for c in summary["columns"]] == ["species", "mean_petal", "n"]
    assert "dataset" not in summary
    table = pl.read_parquet(tmp_path / "summarise" / "artifacts" / "table.parquet")
    assert table["species"].to_list() == ["setosa", "versicolor", "virginica"]
    assert table["n"].to_list() == [50, 50, 50]

    written = run(
        platform,
        tmp_path,
        tasks.run_write_dataset,
        "save",
        {"input": "summarise", "dataset": "iris-summary", "description": "per species"},
        {"summarise": summary},
    )
    WriteDatasetOutputs.model_validate(written)
    assert written["dataset"] == "iris-summary"
    assert written["version"] == 1
    assert written["created"] is True
    assert written["table"] == summary["table"]
    assert written["rows"] == 3
    assert platform.datasets["iris-summary"]["description"] == "per species"
    (version,) = platform.datasets["iris-summary"]["versions"]
    assert version["format"] == "parquet"
    # Through the transform, back to the dataset version the ingest read.
    assert version["lineage"] == {
        "job_id": JOB,
        "task": "save",
        "workflow": {"id": "w-1", "name": "flow", "version": 4},
        "inputs": ["summarise"],
        "datasets": [
            {
                "dataset_id": "d-iris",
                "dataset": "iris",
                "version": 1,
                "version_id": "v-iris-1",
                "sha256": hashlib.sha256(iris_csv()).hexdigest(),
                "task": "load-iris",
            }
        ],
    }
    assert pl.read_parquet(version["bytes"]).equals(table)

    # Every API call carried the job token; the store never saw it (asserted by the fake).
    assert platform.api_requests()
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in platform.api_requests())
    assert any(r.url.host == "store.test" for r in platform.requests)


def test_polars_steps_and_csv_dataset_with_source_lineage(
    platform: FakePlatform, tmp_path: Path
) -> None:
    platform.add_version("iris", b"old,bytes\n1,2\n", "csv")
    platform.add_version("iris", iris_csv(), "csv")
    ingested = run(
        platform, tmp_path, tasks.run_ingest, "load", {"dataset": "iris", "version": "latest"}
    )
    assert ingested["dataset"] == {"name": "iris", "version": 2}
    wide = run(
        platform,
        tmp_path,
        tasks.run_transform,
        "wide",
        {
            "inputs": ["load"],
            "polars": [
                {"filter": "species = 'virginica' AND petal_width > 2.0"},
                {"with_columns": {"area": "petal_length * petal_width"}},
                {"select": ["species", "area"]},
                {"sort": ["area"], "descending": True},
                {"limit": 5},
            ],
        },
        {"load": ingested},
    )
    assert wide["rows"] == 5
    areas = pl.read_parquet(tmp_path / "wide" / "artifacts" / "table.parquet")["area"].to_list()
    assert areas == sorted(areas, reverse=True)

    written = run(
        platform,
        tmp_path,
        tasks.run_write_dataset,
        "save",
        {"input": "load", "dataset": "iris", "format": "csv"},
        {"load": ingested},
    )
    assert written["version"] == 3
    version = platform.datasets["iris"]["versions"][-1]
    assert version["format"] == "csv"
    assert version["bytes"].decode().splitlines()[0] == ",".join(IRIS_COLUMNS)
    (source,) = version["lineage"]["datasets"]
    assert (source["dataset"], source["version"], source["task"]) == ("iris", 2, "load")


def test_ingest_of_an_s3_object_goes_through_the_presign_endpoint(
    platform: FakePlatform, tmp_path: Path
) -> None:
    platform.objects["external/raw-bucket/exports/iris.jsonl"] = (
        pl.read_csv(iris_csv()).write_ndjson().encode()
    )
    out = run(
        platform,
        tmp_path,
        tasks.run_ingest,
        "s3",
        {"s3_uri": "s3://raw-bucket/exports/iris.jsonl"},
    )
    assert platform.presigned == ["s3://raw-bucket/exports/iris.jsonl"]
    assert out["rows"] == 150
    assert [c["name"] for c in out["columns"]] == IRIS_COLUMNS

    with pytest.raises(FetchFailed, match="404"):
        run(platform, tmp_path, tasks.run_ingest, "missing", {"s3_uri": "s3://raw-bucket/none"})


@pytest.fixture
def csv_server() -> Iterator[int]:
    body = iris_csv()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/csv; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_ingest_of_a_url_uses_the_ssrf_guard(
    platform: FakePlatform, tmp_path: Path, csv_server: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"http://127.0.0.1:{csv_server}/export"  # no suffix: the content type tells
    with pytest.raises(BlockedDestination):
        run(platform, tmp_path, tasks.run_ingest, "refused", {"url": url})

    monkeypatch.setenv("ARMILLARY_DATA_INGEST_ALLOW_NETWORKS", f"127.0.0.1/32:{csv_server}")
    out = run(platform, tmp_path, tasks.run_ingest, "fetched", {"url": url})
    assert out["rows"] == 150
    assert platform.requests == []  # a URL source needs nothing from the API

    with pytest.raises(tasks.DataTaskError, match="could not read the source as parquet"):
        run(platform, tmp_path, tasks.run_ingest, "bad", {"url": url, "format": "parquet"})
    with pytest.raises(SourceTooLarge, match="larger than"):
        run(platform, tmp_path, tasks.run_ingest, "big", {"url": url, "max_bytes": 100})


def test_ingest_formats_are_guessed(tmp_path: Path) -> None:
    sample = tmp_path / "sample"
    sample.write_bytes(b"PAR1....")
    assert tasks.guess_format("/x.csv", None, sample) == "csv"
    assert tasks.guess_format("/x.ndjson", "application/json", sample) == "jsonl"
    assert tasks.guess_format("/x", "application/json; charset=utf-8", sample) == "json"
    assert tasks.guess_format("/x", None, sample) == "parquet"
    sample.write_bytes(b'  [{"a": 1}]')
    assert tasks.guess_format("/x", "application/octet-stream", sample) == "json"
    sample.write_bytes(b'{"a": 1}\n{"a": 2}\n')
    assert tasks.guess_format("/x", None, sample) == "jsonl"
    sample.write_bytes(b"a,b\n1,2\n")
    assert tasks.guess_format("/x", None, sample) == "csv"


def test_json_source(platform: FakePlatform, tmp_path: Path) -> None:
    platform.objects["external/bk1/rows.json"] = json.dumps(
        [{"a": 1, "b": "x"}, {"a": 2, "b": None}]
    ).encode()
    out = run(platform, tmp_path, tasks.run_ingest, "j", {"s3_uri": "s3://bk1/rows.json"})
    assert out["rows"] == 2
    assert out["columns"] == [{"name": "a", "dtype": "Int64"}, {"name": "b", "dtype": "String"}]


def test_transform_needs_upstream_tables(platform: FakePlatform, tmp_path: Path) -> None:
    with pytest.raises(tasks.DataTaskError, match="needs"):
        run(
            platform,
            tmp_path,
            tasks.run_transform,
            "t",
            {"inputs": ["nowhere"], "sql": "SELECT 1"},
            {},
        )
    # A table whose bytes differ from the upstream's recorded digest is refused.
    platform.artifacts[(JOB, "up", "table.parquet")] = b"PAR1 tampered"
    upstream = {
        "table": {"job_id": JOB, "task": "up", "name": "table.parquet"},
        "sha256": "0" * 64,
    }
    with pytest.raises(TaskApiError, match="Checksum mismatch"):
        run(
            platform,
            tmp_path,
            tasks.run_transform,
            "t2",
            {"inputs": ["up"], "sql": "SELECT * FROM up"},
            {"up": upstream},
        )


# -- TaskApi ---------------------------------------------------------------------------------


def test_task_api_errors_carry_the_problem_but_never_the_token(tmp_path: Path) -> None:
    def leaky(request: httpx.Request) -> httpx.Response:
        return problem(403, "Forbidden", f"token {TOKEN} may not read this")

    api = TaskApi(make_context(tmp_path, "t"), transport=httpx.MockTransport(leaky))
    with pytest.raises(TaskApiError) as caught:
        api.fetch_dataset_version("iris", 3, tmp_path)
    error = caught.value
    assert error.status == 403
    assert error.title == "Forbidden"
    assert "may not read this" in error.detail
    assert "GET /api/v1/projects/" in str(error)
    for text in (str(error), repr(error), error.detail, json.dumps(error.body)):
        assert TOKEN not in text

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot connect (Authorization: Bearer {TOKEN})")

    api = TaskApi(make_context(tmp_path, "u"), transport=httpx.MockTransport(down))
    with pytest.raises(TaskApiError) as caught:
        api.put_quality("iris", 1, {"passed": True})
    assert caught.value.status == 0
    assert TOKEN not in str(caught.value)
    assert "[redacted]" in str(caught.value)


def test_task_api_calls(platform: FakePlatform, tmp_path: Path) -> None:
    context = make_context(tmp_path, "t")
    with TaskApi(context, transport=platform.transport) as api:
        assert api.presign_external("s3://bkt/a.csv").startswith(f"{STORE}/external/bkt/a.csv")
        platform.datasets["empty"] = {"versions": []}
        with pytest.raises(TaskApiError, match="no version yet"):
            api.fetch_dataset_version("empty", "latest", tmp_path)
        source = tmp_path / "rows.csv"
        source.write_bytes(b"a\n1\n")
        first = api.create_dataset_version(
            "fresh", source, format="csv", lineage={"job_id": JOB, "task": "t"}
        )
        assert first["number"] == 1
        assert first["created"] is True
        path, meta = api.fetch_dataset_version("fresh", 1, tmp_path / "dl")
        assert path == tmp_path / "dl" / "fresh-v1.csv"
        assert path.read_bytes() == b"a\n1\n"
        assert meta["lineage"] == {"job_id": JOB, "task": "t"}
        api.put_quality("fresh", 1, {"passed": False, "checks": [{"name": "rows", "ok": False}]})
    assert platform.quality[("fresh", 1)]["passed"] is False
    quality = next(r for r in platform.requests if r.url.path.endswith("/quality"))
    assert quality.method == "PUT"
    assert quality.url.path == f"/api/v1/projects/{PROJECT}/datasets/fresh/versions/1/quality"


def test_dataset_download_is_verified(platform: FakePlatform, tmp_path: Path) -> None:
    platform.add_version("iris", b"a,b\n1,2\n", "csv")
    original = platform.version_out

    def lying(name: str, version: dict[str, Any]) -> dict[str, Any]:
        return {**original(name, version), "sha256": "f" * 64}

    platform.version_out = lying  # type: ignore[method-assign]
    with (
        TaskApi(make_context(tmp_path, "t"), transport=platform.transport) as api,
        pytest.raises(ChecksumMismatch),
    ):
        api.fetch_dataset_version("iris", 1, tmp_path / "dl")
    assert not any((tmp_path / "dl").iterdir())


def test_params_models() -> None:
    assert IngestParams.model_validate({"dataset": "iris"}).version == "latest"
    assert IngestParams.model_validate({"url": "https://example.com/a.csv"}).max_bytes == 1024**3
    for bad in (
        {},
        {"dataset": "iris", "url": "https://example.com/a.csv"},
        {"url": "file:///etc/passwd"},
        {"url": "https://user:pw@example.com/a.csv"},
        {"s3_uri": "s3://Bad_Bucket/key"},
        {"s3_uri": "https://bucket/key"},
        {"url": "https://example.com/a.csv", "version": 2},
        {"dataset": "../etc"},
        {"dataset": "iris", "version": 0},
        {"dataset": "iris", "format": "xlsx"},
        {"dataset": "iris", "query": "x"},
    ):
        with pytest.raises(ValueError):
            IngestParams.model_validate(bad)
    WriteDatasetParams.model_validate({"input": "t", "dataset": "out.v2"})
    with pytest.raises(ValueError):
        WriteDatasetParams.model_validate({"input": "t", "dataset": "a/b"})


def test_contracts_validate_in_a_workflow_spec() -> None:
    from armillary.contracts.data_tasks import DATA_TASK_TYPES
    from armillary.contracts.tasks import TASK_TYPES
    from armillary.workflows.specs.validation import validate_spec

    types = {**TASK_TYPES, **DATA_TASK_TYPES}
    spec = {
        "name": "iris-pipeline",
        "tasks": [
            {"name": "load-iris", "type": "ingest", "params": {"dataset": "iris"}},
            {
                "name": "summarise",
                "type": "transform",
                "needs": ["load-iris"],
                "params": {"inputs": ["load-iris"], "sql": "SELECT * FROM load_iris"},
            },
            {
                "name": "save",
                "type": "write_dataset",
                "needs": ["summarise"],
                "params": {"input": "summarise", "dataset": "iris-summary"},
            },
        ],
    }
    assert validate_spec(spec, types).ok
    spec["tasks"][2]["needs"] = []  # type: ignore[index]
    result = validate_spec(spec, types)
    assert [e.kind for e in result.errors] == ["input_not_upstream"]
