"""The tracking SDK, ``armillary.tracking``: log a training run from your own code.

Example::

    from armillary import tracking

    with tracking.start_run("study", experiment="churn"):
        tracking.log_params({"lr": 0.05})
        for step in range(100):
            tracking.log_metrics({"loss": train_one_epoch()}, step=step)
        with tracking.start_run("trial-1"):  # nested: a child of "study"
            tracking.set_tags({"trial": "1"})
        tracking.log_artifact("model.onnx")

It speaks the tracking service's MLflow REST API (``<api>/mlflow/<project>/api/2.0/...``)
with httpx alone, so importing it starts no server code. ``log_metrics`` only appends to a
queue: a background thread sends the points in ``runs/log-batch`` calls, and everything queued
is sent when a run ends and when the process exits, so a training loop never waits on the
network. Params, tags and artifacts are sent at once (a conflicting param is an error there).

Where it connects (:func:`configure` overrides each):

- inside a sandboxed task: ``ARMILLARY_API_URL`` and ``ARMILLARY_PROJECT_ID``, which the
  sandbox sets; the worker's proxy adds the job token, so the run is linked to the job and
  task by the server;
- elsewhere: ``ARMILLARY_URL``/``ARMILLARY_TOKEN`` or what ``armillary login`` stored (renewed
  and written back like the CLI does), and the project from ``ARMILLARY_PROJECT``.
"""

from __future__ import annotations

import atexit
import collections
import os
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from . import sdk_models
from .sdk_connection import EXPERIMENT_ENV, Connection, TrackingError, connect
from .sdk_models import UnsafeModel, infer_signature

DEFAULT_EXPERIMENT_ID = "0"
# MLflow's log-batch limits: at most this many metrics in one call.
BATCH_METRICS = 1000
# How often the background thread sends what is queued (and at once past WAKE_AT points).
FLUSH_INTERVAL = 1.0
WAKE_AT = 20 * BATCH_METRICS


class _Batcher:
    """Metric points queued by the caller and sent by a background thread, in order.

    The caller only appends to a deque (thread-safe, no lock, no I/O); the thread wakes every
    :data:`FLUSH_INTERVAL`, or sooner when much is queued, and sends ``runs/log-batch`` calls.
    :meth:`flush` sends what is queued on the calling thread (at a run's end, at exit).
    """

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.pending: collections.deque[tuple[str, str, float, int, int]] = collections.deque()
        self.errors: dict[str, TrackingError] = {}
        self._send_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="armillary-tracking", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(FLUSH_INTERVAL)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        """Send every point queued so far (in the order queued)."""
        with self._send_lock:
            while self.pending:
                self._send_some()

    def _send_some(self) -> None:
        batch: list[tuple[str, str, float, int, int]] = []
        while self.pending and len(batch) < BATCH_METRICS:
            batch.append(self.pending.popleft())
        start = 0
        while start < len(batch):  # one call per run, keeping the order
            run_id = batch[start][0]
            end = start
            while end < len(batch) and batch[end][0] == run_id:
                end += 1
            metrics = [
                {"key": key, "value": _wire_number(value), "timestamp": ts, "step": step}
                for _, key, value, ts, step in batch[start:end]
            ]
            try:
                self.connection.call(
                    "POST", "runs/log-batch", body={"run_id": run_id, "metrics": metrics}
                )
            except TrackingError as exc:
                # Kept for the run's end, which raises it; the loop must not stop the training.
                self.errors.setdefault(run_id, exc)
            except Exception as exc:  # an answer that is not JSON, ...: the thread goes on
                self.errors.setdefault(run_id, TrackingError(0, "ERROR", repr(exc)))
            start = end

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=FLUSH_INTERVAL + 5)
        self.flush()


def _wire_number(value: float) -> float | str:
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return value


class Run:
    """A run being logged. Use as a context manager (ends FINISHED, or FAILED when the block
    raises), or call :meth:`end`."""

    def __init__(self, tracker: _Tracker, info: dict[str, Any], parent: Run | None) -> None:
        self._tracker = tracker
        self.id: str = info["run_id"]
        self.name: str = info.get("run_name", "")
        self.experiment_id: str = info["experiment_id"]
        self.artifact_uri: str = info["artifact_uri"]
        self.parent = parent
        self.ended = False
        self.logged_models: list[str] = []

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, name={self.name!r})"

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.end("FINISHED" if exc_type is None else "FAILED")

    def log_params(self, params: Mapping[str, Any]) -> None:
        items = [{"key": str(k), "value": str(v)} for k, v in params.items()]
        for start in range(0, len(items), 100):
            self._call("runs/log-batch", {"run_id": self.id, "params": items[start : start + 100]})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        items = [{"key": str(k), "value": str(v)} for k, v in tags.items()]
        for start in range(0, len(items), 100):
            self._call("runs/log-batch", {"run_id": self.id, "tags": items[start : start + 100]})

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Queue the points (no I/O here): the background thread sends them."""
        timestamp = time.time_ns() // 1_000_000
        step = 0 if step is None else int(step)
        batcher = self._tracker.batcher()
        append = batcher.pending.append
        for key, value in metrics.items():
            append((self.id, key, float(value), timestamp, step))
        if len(batcher.pending) > WAKE_AT:
            batcher.wake()

    def log_artifact(
        self, local_path: str | os.PathLike[str], artifact_path: str | None = None
    ) -> None:
        """Upload one file, as ``[artifact_path/]<its name>`` under the run's artifacts."""
        file = Path(local_path)
        if not file.is_file():
            raise FileNotFoundError(f"No such file: {file}")
        self._tracker.connection().upload(self.artifact_uri, _join(artifact_path, file.name), file)

    def log_artifacts(
        self, local_dir: str | os.PathLike[str], artifact_path: str | None = None
    ) -> None:
        """Upload every file under ``local_dir``, keeping their relative paths."""
        root = Path(local_dir)
        if not root.is_dir():
            raise NotADirectoryError(f"No such directory: {root}")
        for file in sorted(p for p in root.rglob("*") if p.is_file()):
            relative = file.relative_to(root).as_posix()
            self._tracker.connection().upload(
                self.artifact_uri, _join(artifact_path, relative), file
            )

    def log_model(
        self, model: Any, name: str = "model", *, signature: Mapping[str, Any] | None = None
    ) -> str:
        """Log ``model`` as an MLflow-style model folder ``<name>/`` (``MLmodel`` and the model
        file) under the run's artifacts, and answer its URI ``runs:/<run_id>/<name>``. ONNX (a
        ``ModelProto`` or its bytes) or a scikit-learn estimator (saved with skops) only:
        anything else raises :class:`UnsafeModel` and nothing is sent. ``signature``:
        ``{"inputs": {column: type}, "output": type}`` (see :func:`infer_signature`); without
        one the model is registered but not served."""
        sdk_models.check_name(name)
        saved = sdk_models.save(model)
        document = sdk_models.mlmodel(saved, self.id, name, signature)
        with tempfile.TemporaryDirectory(prefix="armillary-model-") as work:
            folder = Path(work) / name
            sdk_models.write(folder, saved, document)
            # The model file first: a folder with an MLmodel file is a model to register.
            self.log_artifact(folder / saved.file, artifact_path=name)
            self.log_artifact(folder / sdk_models.MLMODEL_FILE, artifact_path=name)
        self.logged_models.append(name)
        return f"runs:/{self.id}/{name}"

    def flush(self) -> None:
        """Send this process's queued points now; raise the first error a send of this run's
        points met."""
        batcher = self._tracker.batcher()
        batcher.flush()
        error = batcher.errors.pop(self.id, None)
        if error is not None:
            raise error

    def end(self, status: str = "FINISHED") -> None:
        """Send what is queued, then set the status and end time (once)."""
        if self.ended:
            return
        self.ended = True
        self._tracker.pop(self)
        try:
            self.flush()
        finally:
            self._call(
                "runs/update",
                {"run_id": self.id, "status": status, "end_time": time.time_ns() // 1_000_000},
            )

    def _call(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._tracker.connection().call("POST", endpoint, body=body)


def _join(prefix: str | None, name: str) -> str:
    return f"{prefix.strip('/')}/{name}" if prefix and prefix.strip("/") else name


class _Tracker:
    """The process's state: its connection, its batcher, and the stack of active runs."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._connection: Connection | None = None
        self._batcher: _Batcher | None = None
        self._settings: dict[str, Any] = {}
        self.stack: list[Run] = []
        self._registered = False

    def configure(self, **settings: Any) -> None:
        with self._lock:
            if self.stack:
                raise RuntimeError("End the active runs before connecting elsewhere")
            self.shutdown()
            self._settings = {k: v for k, v in settings.items() if v is not None}

    def reset(self) -> None:
        """Forget everything, open runs included (tests)."""
        with self._lock:
            self.stack.clear()
            self.shutdown()
            self._settings = {}

    def connection(self) -> Connection:
        with self._lock:
            if self._connection is None:
                self._connection = connect(**self._settings)
                if not self._registered:
                    atexit.register(self.at_exit)
                    self._registered = True
            return self._connection

    def batcher(self) -> _Batcher:
        batcher = self._batcher
        if batcher is not None:
            return batcher
        with self._lock:
            if self._batcher is None:
                self._batcher = _Batcher(self.connection())
            return self._batcher

    def active(self) -> Run:
        if not self.stack:
            raise RuntimeError("No active run: call start_run() first")
        return self.stack[-1]

    def pop(self, run: Run) -> None:
        with self._lock:
            if run in self.stack:
                self.stack.remove(run)

    def at_exit(self) -> None:
        """Send what is queued and end the runs still open, FAILED if the interpreter is
        exiting on an uncaught exception (as MLflow's client does, but it says FINISHED)."""
        status = "FAILED" if getattr(sys, "last_value", None) is not None else "FINISHED"
        for run in reversed(list(self.stack)):
            try:
                run.end(status)
            except Exception as exc:
                print(f"armillary.tracking: run {run.id}: {exc}", file=sys.stderr)
        self.shutdown()

    def shutdown(self) -> None:
        with self._lock:
            if self._batcher is not None:
                self._batcher.close()
                self._batcher = None
            if self._connection is not None:
                self._connection.close()
                self._connection = None


_tracker = _Tracker()


def _forget_after_fork() -> None:
    """A forked child (a data loader's worker) starts without the parent's thread, sockets
    and locks: it connects afresh if it logs, and does not end the parent's runs."""
    _tracker._lock = threading.RLock()
    _tracker._batcher = None
    _tracker._connection = None
    _tracker.stack = []


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def configure(
    url: str | None = None,
    project: str | None = None,
    token: str | None = None,
    *,
    transport: httpx.BaseTransport | None = None,
) -> None:
    """Choose the server, project and token instead of the environment's (for tests, or a
    notebook talking to several servers). Sends what is queued first; refused while a run is
    active."""
    _tracker.configure(url=url, project=project, token=token, transport=transport)


def start_run(
    run_name: str | None = None,
    *,
    experiment: str | None = None,
    tags: Mapping[str, Any] | None = None,
    nested: bool | None = None,
) -> Run:
    """Start a run in ``experiment`` (a name, made if missing; ``ARMILLARY_EXPERIMENT`` or the
    project's default experiment when not given). Started while another run is active, it is
    that run's child (``nested=False`` starts a top-level run instead)."""
    connection = _tracker.connection()
    parent = _tracker.stack[-1] if _tracker.stack and nested is not False else None
    name = experiment or os.environ.get(EXPERIMENT_ENV)
    if name:
        experiment_id = _experiment_id(connection, name)
    elif parent is not None:
        experiment_id = parent.experiment_id
    else:
        experiment_id = DEFAULT_EXPERIMENT_ID
    run_tags = [{"key": str(k), "value": str(v)} for k, v in (tags or {}).items()]
    if parent is not None:
        run_tags.append({"key": "mlflow.parentRunId", "value": parent.id})
    body: dict[str, Any] = {
        "experiment_id": experiment_id,
        "start_time": time.time_ns() // 1_000_000,
        "tags": run_tags,
    }
    if run_name:
        body["run_name"] = run_name
    info = connection.call("POST", "runs/create", body=body)["run"]["info"]
    run = Run(_tracker, info, parent)
    _tracker.stack.append(run)
    return run


def _experiment_id(connection: Connection, name: str) -> str:
    try:
        found = connection.call("GET", "experiments/get-by-name", params={"experiment_name": name})
        return str(found["experiment"]["experiment_id"])
    except TrackingError as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    try:
        return str(
            connection.call("POST", "experiments/create", body={"name": name})["experiment_id"]
        )
    except TrackingError as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        # Another process made it meanwhile.
        found = connection.call("GET", "experiments/get-by-name", params={"experiment_name": name})
        return str(found["experiment"]["experiment_id"])


def active_run() -> Run | None:
    """The innermost active run, if any."""
    return _tracker.stack[-1] if _tracker.stack else None


def end_run(status: str = "FINISHED") -> None:
    """End the innermost active run."""
    _tracker.active().end(status)


def log_params(params: Mapping[str, Any]) -> None:
    """Log params of the active run (immutable: a different value later is an error)."""
    _tracker.active().log_params(params)


def log_param(key: str, value: Any) -> None:
    log_params({key: value})


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    """Queue metric points of the active run at ``step`` (0 when not given); never waits."""
    _tracker.active().log_metrics(metrics, step)


def log_metric(key: str, value: float, step: int | None = None) -> None:
    log_metrics({key: value}, step)


def set_tags(tags: Mapping[str, Any]) -> None:
    """Set tags of the active run (the last value wins)."""
    _tracker.active().set_tags(tags)


def set_tag(key: str, value: Any) -> None:
    set_tags({key: value})


def log_artifact(local_path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    """Upload a file to the active run's artifacts."""
    _tracker.active().log_artifact(local_path, artifact_path)


def log_artifacts(local_dir: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    """Upload a directory's files to the active run's artifacts."""
    _tracker.active().log_artifacts(local_dir, artifact_path)


def log_model(
    model: Any, name: str = "model", *, signature: Mapping[str, Any] | None = None
) -> str:
    """Log a model (ONNX or a scikit-learn estimator saved with skops) to the active run; its
    URI ``runs:/<run_id>/<name>``. See :meth:`Run.log_model`."""
    return _tracker.active().log_model(model, name, signature=signature)


def register_model(
    run: Run | str,
    name: str,
    *,
    model_path: str | None = None,
    description: str = "",
) -> dict[str, Any]:
    """Register the model a run logged as the next version of registered model ``name`` (made
    if missing), through the tracking service's registry endpoints; the version as MLflow's
    ``model_version`` (``name``, ``version``, ``run_id``, ``source``, ...). ``run`` is a
    :class:`Run`, a run id, or a model URI ``runs:/<run_id>/<path>``; ``model_path`` is the
    model's directory (default: the run's last :func:`log_model`, else ``model``). The version
    carries the run's params, metrics and lineage (its job, when a job started the run)."""
    if isinstance(run, Run):
        run_id = run.id
        path = model_path or (run.logged_models[-1] if run.logged_models else "model")
    elif run.startswith("runs:/"):
        run_id, _, path = run.removeprefix("runs:/").partition("/")
        path = model_path or path
    else:
        run_id, path = run, model_path or "model"
    if not run_id or not path:
        raise ValueError("Name a run and the model's path: runs:/<run_id>/<path>")
    connection = _tracker.connection()
    try:
        connection.call("POST", "registered-models/create", body={"name": name})
    except TrackingError as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    body = {
        "name": name,
        "source": f"runs:/{run_id}/{path.strip('/')}",
        "run_id": run_id,
        "description": description,
    }
    answer = connection.call("POST", "model-versions/create", body=body)
    return dict(answer["model_version"])


def flush() -> None:
    """Send every queued metric point now."""
    if _tracker.stack:
        _tracker.active().flush()
    elif _tracker._batcher is not None:
        _tracker._batcher.flush()


__all__ = [
    "Connection",
    "Run",
    "TrackingError",
    "UnsafeModel",
    "active_run",
    "configure",
    "connect",
    "end_run",
    "flush",
    "infer_signature",
    "log_artifact",
    "log_artifacts",
    "log_metric",
    "log_metrics",
    "log_model",
    "log_param",
    "log_params",
    "register_model",
    "set_tag",
    "set_tags",
    "start_run",
]
