"""The platform API as a running task sees it: a job-scoped token, synchronous httpx.

Tasks never touch the database (DESIGN §2); inside a task's child process they read upstream
tables, dataset versions and external objects, and write dataset versions and quality reports,
through these calls. The job token travels only in the ``Authorization`` header of requests to
the API: never to a redirect target (a presigned object-store URL), and never into an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, urljoin

import httpx

from .errors import ArmillaryError, error_from_response
from .transfer import CHUNK_SIZE, MultipartFile, write_verified

if TYPE_CHECKING:
    from armillary.contracts.tasks import TaskContext

_USER_AGENT = "armillary-task"
_REDACTED = "[redacted]"


class TaskApiError(ArmillaryError):
    """A call to the platform API failed: ``status`` (0 when there was no answer), and the
    problem's ``title`` and ``detail``; the message also names the call. Never the token."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str = "",
        body: dict[str, Any] | None = None,
        *,
        call: str = "",
    ) -> None:
        super().__init__(status, title, detail, body)
        self.call = call
        if call:
            self.args = (f"{call}: {self.args[0]}",)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.status, self.title, self.detail, self.body, self.call))


def _rebuild(status: int, title: str, detail: str, body: dict[str, Any], call: str) -> TaskApiError:
    return TaskApiError(status, title, detail, body, call=call)


def _file_chunks(file: Any) -> Iterator[bytes]:
    while chunk := file.read(CHUNK_SIZE):
        yield chunk


def _segment(value: str | int) -> str:
    # Names are path segments: a "/" or "%" in one must not change the route.
    return quote(str(value), safe="")


class TaskApi:
    """Calls of a task to the platform API, authenticated as its job (``context``)."""

    def __init__(
        self,
        context: TaskContext,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._context = context
        self._project = _segment(context.project_id)
        # Redirects are followed by hand so that the token never goes to another host; the
        # environment's proxies are ignored (a task talks to its platform directly).
        self._http = httpx.Client(
            base_url=context.api_url.rstrip("/"),
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": _USER_AGENT},
        )

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> TaskApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls -----------------------------------------------------------------------------

    def fetch_table(self, ref: Mapping[str, Any], dest: Path, *, sha256: str | None = None) -> Path:
        """Download the table an upstream task produced (its outputs' ``table``) to ``dest``.

        ``ref`` is ``{"job_id", "task", "name"}``; with ``sha256`` the bytes must match it.
        """
        try:
            job, task, name = str(ref["job_id"]), str(ref["task"]), str(ref["name"])
        except (KeyError, TypeError) as exc:
            raise TaskApiError(0, "Bad table reference", "expected job_id, task and name") from exc
        path = f"/api/v1/jobs/{_segment(job)}/tasks/{_segment(task)}/artifacts/{_segment(name)}"
        with self._download(path) as chunks:
            _write_checked(chunks, dest, sha256)
        return dest

    def fetch_dataset_version(
        self, dataset: str, version: int | str, dest_dir: Path
    ) -> tuple[Path, dict[str, Any]]:
        """Download a dataset version (``latest`` or a number) into ``dest_dir``.

        Returns the file (``<dataset>-v<n>.<format>``, verified against the version's size
        and SHA-256) and the version's record.
        """
        base = f"/api/v1/projects/{self._project}/datasets/{_segment(dataset)}"
        if version == "latest":
            found = self._json("GET", base)
            latest = found.get("latest_version")
            if latest is None:
                raise TaskApiError(
                    404, "No version", f"dataset {dataset!r} has no version yet", call="GET " + base
                )
            number = int(latest)
        else:
            number = int(version)
        meta = self._json("GET", f"{base}/versions/{number}")
        dest = Path(dest_dir) / f"{_plain(dataset)}-v{number}.{_plain(str(meta['format']))}"
        with self._download(f"{base}/versions/{number}/content") as chunks:
            write_verified(chunks, dest, size=int(meta["size_bytes"]), sha256=str(meta["sha256"]))
        return dest, meta

    def job(self) -> dict[str, Any]:
        """This task's job as ``GET /api/v1/jobs/{id}`` shows it: its workflow and version,
        and each task run with its type, ``needs`` and outputs."""
        return self._json("GET", f"/api/v1/jobs/{_segment(self._context.job_id)}")

    def dataset_version(self, dataset: str, version: int) -> dict[str, Any]:
        """The record of version ``version`` of ``dataset`` (its ids, size and SHA-256)."""
        base = f"/api/v1/projects/{self._project}/datasets/{_segment(dataset)}"
        return self._json("GET", f"{base}/versions/{int(version)}")

    def presign_external(self, uri: str) -> str:
        """A short-lived URL that reads the external object ``uri`` (``s3://bucket/key``)."""
        path = f"/api/v1/projects/{self._project}/external-objects/presign"
        answer = self._json("POST", path, json={"uri": uri})
        url = answer.get("url")
        if not isinstance(url, str) or not url:
            raise TaskApiError(
                0, "Bad answer", "the presign answer has no url", call=f"POST {path}"
            )
        return url

    def create_dataset_version(
        self,
        dataset: str,
        path: Path,
        *,
        format: str,
        lineage: Mapping[str, Any],
        description: str = "",
    ) -> dict[str, Any]:
        """Upload ``path`` as the next version of ``dataset`` (created if missing), recording
        ``lineage``. Returns the version's record plus ``created`` (False when identical bytes
        already were a version)."""
        base = f"/api/v1/projects/{self._project}/datasets"
        dataset_path = f"{base}/{_segment(dataset)}"
        try:
            self._json("GET", dataset_path)
        except TaskApiError as exc:
            if exc.status != 404:
                raise
            try:
                self._json("POST", base, json={"name": dataset, "description": description})
            except TaskApiError as race:
                if race.status != 409:  # created meanwhile: fine
                    raise
        fields = {"format": format, "lineage": json.dumps(dict(lineage), sort_keys=True)}
        body = MultipartFile(Path(path), fields)
        response = self._send(
            "POST",
            f"{dataset_path}/versions",
            content=iter(body),
            headers=body.headers,
            timeout=httpx.Timeout(None, connect=10.0),
        )
        try:
            version = cast(dict[str, Any], response.json())
        finally:
            response.close()
        version["created"] = response.status_code == 201
        return version

    def put_quality(self, dataset: str, version: int, report: Mapping[str, Any]) -> None:
        """Record the data-quality ``report`` of a dataset version."""
        path = (
            f"/api/v1/projects/{self._project}/datasets/{_segment(dataset)}"
            f"/versions/{int(version)}/quality"
        )
        self._send("PUT", path, json=dict(report)).close()

    def worker_call(self, name: str, upload: Path, dest: Path) -> dict[str, Any]:
        """Ask the worker to do ``name`` (what needs something no sandbox holds, such as a
        SageMaker job) with ``upload`` as its input; writes what it returns to ``dest`` and
        returns its description. Waits as long as the call lasts."""
        path = f"/_worker/{_segment(name)}"
        forever = httpx.Timeout(None, connect=10.0)
        with upload.open("rb") as body:
            response = self._send(
                "POST", path, content=_file_chunks(body), stream=True, timeout=forever
            )
        try:
            info = json.loads(response.headers.get("x-armillary-result") or "{}")
            with dest.open("wb") as out:
                for chunk in response.iter_bytes(CHUNK_SIZE):
                    out.write(chunk)
        finally:
            response.close()
        return cast(dict[str, Any], info)

    def report_progress(
        self,
        *,
        stage: str,
        current: int | None = None,
        total: int | None = None,
        message: str = "",
        metrics: Mapping[str, float] | None = None,
    ) -> None:
        """Show how far this attempt has got (a fold, an iteration, a remote job's status) on
        the job while it runs. Refused (409) once the attempt is no longer the task's current
        one."""
        path = (
            f"/api/v1/jobs/{_segment(self._context.job_id)}"
            f"/tasks/{_segment(self._context.task)}/progress"
        )
        body = {
            "attempt_id": self._context.attempt_id,
            "stage": stage,
            "current": current,
            "total": total,
            "message": message,
            "metrics": dict(metrics or {}),
        }
        self._send("PUT", path, json=body).close()

    def get_model_version(self, model: str, version: int) -> dict[str, Any]:
        """The record of version ``version`` of registered model ``model``."""
        return self._json("GET", f"{self._model_path(model)}/versions/{int(version)}")

    def get_alias(self, model: str, alias: str) -> dict[str, Any] | None:
        """What ``alias`` of ``model`` points to (``{"alias", "version", "model_version"}``), or
        None when the model or the alias does not exist."""
        try:
            return self._json("GET", f"{self._model_path(model)}/aliases/{_segment(alias)}")
        except TaskApiError as exc:
            if exc.status == 404:
                return None
            raise

    def fetch_model_artifact(self, model: str, version: int, name: str, dest: Path) -> Path:
        """Download artifact ``name`` (e.g. ``model.onnx``) of a model version to ``dest``."""
        path = f"{self._model_path(model)}/versions/{int(version)}/artifacts/{_segment(name)}"
        with self._download(path) as chunks:
            _write_checked(chunks, dest, None)
        return dest

    def register_model_version(self, model: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Register the next version of ``model`` (created if missing) from this job's
        artifacts; ``body`` is the registry's version request. Returns the version record."""
        base = f"/api/v1/projects/{self._project}/models"
        try:
            self._json("GET", self._model_path(model))
        except TaskApiError as exc:
            if exc.status != 404:
                raise
            try:
                self._json("POST", base, json={"name": model})
            except TaskApiError as race:
                if race.status != 409:  # created meanwhile: fine
                    raise
        return self._json("POST", f"{self._model_path(model)}/versions", json=dict(body))

    def attach_onnx(self, model: str, version: int, body: Mapping[str, Any]) -> dict[str, Any]:
        """Finish the pending ONNX export of a model version (its export job only): ``body``
        is ``{"status": "ready", "task"}`` or ``{"status": "failed", "reason"}``."""
        path = f"{self._model_path(model)}/versions/{int(version)}/onnx"
        return self._json("PUT", path, json=dict(body))

    def set_alias(self, model: str, alias: str, version: int, reason: str) -> dict[str, Any]:
        """Point ``alias`` of ``model`` at ``version``, recording ``reason``."""
        path = f"{self._model_path(model)}/aliases/{_segment(alias)}"
        return self._json("PUT", path, json={"version": int(version), "reason": reason})

    def tracking(
        self, endpoint: str, body: Mapping[str, Any] | None = None, *, method: str = "POST"
    ) -> dict[str, Any]:
        """A call of the project's MLflow REST API in the tracking service (``runs/create``,
        ``runs/log-batch``, ...): runs this job creates are linked to it and its task by the
        server, from the job token."""
        path = f"/mlflow/{self._project}/api/2.0/mlflow/{endpoint}"
        return self._json(method, path, json=None if body is None else dict(body))

    def _model_path(self, model: str) -> str:
        return f"/api/v1/projects/{self._project}/models/{_segment(model)}"

    # -- plumbing --------------------------------------------------------------------------

    def _json(self, method: str, path: str, *, json: Any = None) -> dict[str, Any]:
        response = self._send(method, path, json=json)
        try:
            payload = response.json()
        except ValueError as exc:
            raise TaskApiError(
                response.status_code, "Bad answer", "not JSON", call=f"{method} {path}"
            ) from exc
        finally:
            response.close()
        if not isinstance(payload, dict):
            raise TaskApiError(
                response.status_code, "Bad answer", "not a JSON object", call=f"{method} {path}"
            )
        return payload

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: Any = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        timeout: httpx.Timeout | None = None,
    ) -> httpx.Response:
        call = f"{method} {path}"
        request = self._http.build_request(
            method,
            path,
            json=json,
            content=content,
            headers={**(headers or {}), **self._context.api_headers()},
            timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )
        try:
            response = self._http.send(request, stream=stream)
        except httpx.HTTPError as exc:
            raise TaskApiError(0, "Connection failed", self._clean(str(exc)), call=call) from None
        if response.is_error:
            try:
                raise self._error(error_from_response(response), call)
            finally:
                response.close()
        return response

    @contextlib.contextmanager
    def _download(self, path: str) -> Iterator[Iterator[bytes]]:
        """The bytes at an API ``path``, following one redirect (a presigned URL) without the
        token."""
        # The client's timeout bounds each wait for bytes, not the whole (large) transfer.
        response = self._send("GET", path, stream=True)
        try:
            if response.is_redirect:
                location = response.headers.get("Location")
                response.close()
                if not location:
                    raise TaskApiError(
                        response.status_code, "Bad redirect", "no Location", call=f"GET {path}"
                    )
                response = self._external(urljoin(str(response.url), location), path)
            yield response.iter_bytes(CHUNK_SIZE)
        finally:
            response.close()

    def _external(self, url: str, path: str) -> httpx.Response:
        # A fresh request with no Authorization: the target is the object store, not the API.
        request = httpx.Request("GET", url, headers={"User-Agent": _USER_AGENT})
        try:
            response = self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise TaskApiError(
                0, "Connection failed", f"redirect target: {type(exc).__name__}", call=f"GET {path}"
            ) from None
        if response.is_error:
            try:
                raise self._error(error_from_response(response), f"GET {path} (redirect)")
            finally:
                response.close()
        return response

    def _error(self, error: ArmillaryError, call: str) -> TaskApiError:
        body = json.loads(self._clean(json.dumps(error.body))) if error.body else {}
        return TaskApiError(
            error.status, self._clean(error.title), self._clean(error.detail), body, call=call
        )

    def _clean(self, text: str) -> str:
        """``text`` with the token masked, should an answer ever echo it."""
        token = self._context.token()
        return text.replace(token, _REDACTED) if token else text


def _plain(value: str) -> str:
    # A file name from an API value: no separators or dot-dot, whatever the server said.
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in value).lstrip(".") or "file"


def _write_checked(chunks: Iterator[bytes], dest: Path, sha256: str | None) -> None:
    """Write ``chunks`` beside ``dest`` and move them into place only when complete (and, with
    ``sha256``, matching)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.part")
    digest = hashlib.sha256()
    try:
        with partial.open("xb") as file:
            for chunk in chunks:
                file.write(chunk)
                digest.update(chunk)
        if sha256 is not None and digest.hexdigest() != sha256.lower():
            raise TaskApiError(
                0, "Checksum mismatch", f"SHA-256 {digest.hexdigest()}, expected {sha256}"
            )
        os.replace(partial, dest)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
