"""The sandbox's rules (environment allow-list, working directory, limits), the outputs check
and the built-in task type implementations, without a fork server."""

from __future__ import annotations

import math
import os
import resource
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from armillary.contracts.tasks import NOOP, SLEEP, TaskContext
from armillary.workflows import tasks
from armillary.workflows.execution import sandbox
from armillary.workflows.execution.child import (
    OutputError,
    check_outputs,
    describe_error,
    load_implementation,
)
from armillary.workflows.execution.protocol import AttemptSpec, ResourceLimits

WORKER_ENV = {
    "PATH": "/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "PYTHONHASHSEED": "0",
    "VIRTUAL_ENV": "/venv",
    "COVERAGE_PROCESS_START": "/repo/pyproject.toml",
    "HOME": "/root",
    "DATABASE_URL": "postgresql://armillary:pw@db/armillary",
    "ARMILLARY_DATABASE_URL": "postgresql://armillary:pw@db/armillary",
    "ARMILLARY_HOME": "/var/lib/armillary",
    "ARMILLARY_API_URL": "http://inherited",
    "ARMILLARY_SECRET_KEY": "k" * 40,
    "REDIS_URL": "redis://cache",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "AWS_ACCESS_KEY_ID": "AKIA",
    "GITHUB_TOKEN": "ghp_x",
    "PGPASSWORD": "pw",
    "SSH_AUTH_SOCK": "/tmp/agent",
}


# -- environment -------------------------------------------------------------------------------


def test_server_env_keeps_only_the_allow_list() -> None:
    env = sandbox.server_env(WORKER_ENV)  # no credential, database URL or key among them
    assert env == {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "VIRTUAL_ENV": "/venv",
        "COVERAGE_PROCESS_START": "/repo/pyproject.toml",
    }


def test_server_env_adds_extra_env() -> None:
    env = sandbox.server_env({"PATH": "/bin"}, {"HF_HUB_OFFLINE": "1"})
    assert env == {"PATH": "/bin", "HF_HUB_OFFLINE": "1"}


@pytest.mark.parametrize("name", ["ARMILLARY_API_URL", "ARMILLARY_HOME", "HOME", "TMPDIR"])
def test_extra_env_may_not_set_platform_variables(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        sandbox.server_env({}, {name: "x"})


def test_the_token_is_not_in_the_spec_repr() -> None:
    spec = AttemptSpec(
        attempt_id="a",
        job_id="j",
        project_id="p",
        task="t",
        task_type="noop",
        params={},
        inputs={},
        declared_outputs=[],
        limits=ResourceLimits(),
        api_url="http://api",
        job_token="tok-very-secret",
    )
    context = TaskContext(
        job_id="j",
        project_id="p",
        task="t",
        attempt_id="a",
        workdir=Path("/w"),
        artifacts_dir=Path("/w/artifacts"),
        api_url="http://api",
        _token="tok-very-secret",
    )
    assert "tok-very-secret" not in repr(spec)
    assert "tok-very-secret" not in repr(context)
    assert context.token() == "tok-very-secret"
    assert context.api_headers() == {"Authorization": "Bearer tok-very-secret"}


# -- working directory and limits ---------------------------------------------------------------


def test_workdir_is_private_with_artifacts_and_tmp(tmp_path: Path) -> None:
    workdir = sandbox.make_workdir(tmp_path, "attempt-1", uid=None)
    assert workdir.root == tmp_path / "attempt-1"
    for path in (workdir.root, workdir.artifacts, workdir.tmp):
        assert path.is_dir()
        assert path.stat().st_mode & 0o777 == 0o700
    with pytest.raises(FileExistsError):
        sandbox.make_workdir(tmp_path, "attempt-1", uid=None)


@pytest.mark.parametrize("attempt_id", ["", "../escape", "a/b", ".hidden"])
def test_workdir_refuses_odd_attempt_ids(tmp_path: Path, attempt_id: str) -> None:
    with pytest.raises(ValueError, match="plain name"):
        sandbox.make_workdir(tmp_path, attempt_id, uid=None)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_workdir_belongs_to_the_sandbox_user(tmp_path: Path) -> None:
    workdir = sandbox.make_workdir(tmp_path, "attempt-2", uid=65534)
    assert {p.stat().st_uid for p in (workdir.root, workdir.artifacts, workdir.tmp)} == {65534}


def test_limits_apply_in_a_child() -> None:
    """Limits are set in a forked child, which reports them through its exit code."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child exits without returning to pytest
        ok = False
        try:
            sandbox.apply_limits(ResourceLimits(memory_bytes=300 * 1024**2, cpu_seconds=7))
            ok = (
                resource.getrlimit(resource.RLIMIT_DATA) == (300 * 1024**2,) * 2
                and resource.getrlimit(resource.RLIMIT_CPU)[0] in (7, 8)  # + what it has spent
                and resource.getrlimit(resource.RLIMIT_CPU)[1]
                == resource.getrlimit(resource.RLIMIT_CPU)[0] + 1
                and resource.getrlimit(resource.RLIMIT_CORE) == (0, 0)
                and sandbox.set_no_new_privs()
            )
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_the_cpu_budget_starts_when_the_attempt_does() -> None:
    """A pre-started sandbox spends CPU on its imports before the attempt: that time is not
    the task's, so the task still gets its full budget and a clean SIGXCPU (not the hard
    limit's SIGKILL, which a budget counted from the process's start would reach at once)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child exits without returning to pytest
        try:
            while resource.getrusage(resource.RUSAGE_SELF).ru_utime < 2.5:  # the warm-up
                pass
            sandbox.apply_limits(ResourceLimits(cpu_seconds=1))
            while True:
                pass
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status)
    assert os.WTERMSIG(status) == signal.SIGXCPU


# -- outputs -----------------------------------------------------------------------------------


def test_outputs_of_a_dynamic_type_need_every_declared_name() -> None:
    assert check_outputs({"a": 1, "b": [1, 2]}, NOOP, ["a", "b"]) == {"a": 1, "b": [1, 2]}
    with pytest.raises(OutputError, match="missing declared outputs: b, c"):
        check_outputs({"a": 1}, NOOP, ["a", "b", "c"])


def test_outputs_of_a_fixed_type_follow_its_model() -> None:
    assert check_outputs({"seconds": 2}, SLEEP, []) == {"seconds": 2.0}
    with pytest.raises(OutputError, match="do not match the sleep type"):
        check_outputs({"seconds": 2, "extra": 1}, SLEEP, [])


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ([1, 2], "must return a dict of outputs, not list"),
        ({1: "a"}, "output names must be strings"),
        ({"a": object()}, "not JSON-serialisable"),
        ({"a": math.nan}, "not JSON-serialisable"),
        ({"a": "x" * 2000}, "more than the limit of 1000"),
    ],
)
def test_bad_outputs_are_refused_with_a_reason(outputs: Any, message: str) -> None:
    with pytest.raises(OutputError, match=message):
        check_outputs(outputs, NOOP, [], max_bytes=1000)


def test_errors_show_only_user_frames() -> None:
    source = "def main():\n    raise ValueError('bad value')\n"
    namespace: dict[str, Any] = {}
    exec(compile(source, "<task:t>", "exec"), namespace)  # noqa: S102 - as a python task does
    try:
        namespace["main"]()
    except ValueError as exc:
        message = describe_error(exc, ["<task:t>"])
    assert message.startswith("ValueError: bad value\n")
    assert '"<task:t>", line 2, in main' in message
    assert __file__ not in message
    assert describe_error(KeyError(), ["<task:t>"]) == "KeyError"


def test_every_builtin_type_has_an_implementation() -> None:
    assert load_implementation("noop") is tasks.run_noop
    assert load_implementation("python") is tasks.run_python
    with pytest.raises(LookupError, match="no implementation"):
        load_implementation("no-such-type")


# -- the built-in task types, called directly ----------------------------------------------------


@pytest.fixture
def context(tmp_path: Path) -> TaskContext:
    return TaskContext(
        job_id="job-1",
        project_id="project-1",
        task="step",
        attempt_id="attempt-1",
        workdir=tmp_path,
        artifacts_dir=tmp_path / "artifacts",
        api_url="http://api",
        _token="tok",
    )


@pytest.fixture(autouse=True)
def _no_leftover_task_modules() -> Iterator[None]:
    path, modules = list(sys.path), set(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        del sys.modules[name]


def test_noop_sleep_and_fail(context: TaskContext) -> None:
    assert tasks.run_noop({"values": {"a": 1}}, {}, context) == {"a": 1}
    assert tasks.run_sleep({"seconds": 0}, {}, context) == {"seconds": 0}
    with pytest.raises(tasks.TaskFailed, match="on purpose"):
        tasks.run_fail({"message": "on purpose"}, {}, context)


def test_python_passes_inputs_and_context_only_when_asked(context: TaskContext) -> None:
    source = (
        "def main(x, inputs, *, context):\n"
        "    return {'x': x, 'up': inputs['up']['n'], 'job': context.job_id}\n"
        "def plain(x, **kwargs):\n"
        "    return {'kwargs': sorted(kwargs)}\n"
        "def nothing():\n"
        "    pass\n"
    )
    inputs = {"up": {"n": 5}}
    params: dict[str, Any] = {"source": source, "args": {"x": 2}}
    assert tasks.run_python(params, inputs, context) == {"x": 2, "up": 5, "job": "job-1"}
    params["entrypoint"] = "plain"
    assert tasks.run_python(params, inputs, context) == {"kwargs": []}
    assert tasks.run_python({"source": source, "entrypoint": "nothing"}, inputs, context) == {}


def test_python_refuses_a_missing_function_or_a_non_dict(context: TaskContext) -> None:
    with pytest.raises(LookupError, match="'absent' is not a function"):
        tasks.run_python({"source": "x = 1", "entrypoint": "absent"}, {}, context)
    with pytest.raises(TypeError, match="must return a dict of outputs, not int"):
        tasks.run_python({"source": "def main():\n    return 3\n"}, {}, context)


def test_python_bundle_entrypoints(context: TaskContext, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    (bundle / "pipeline").mkdir(parents=True)
    (bundle / "pipeline" / "__init__.py").write_text("")
    (bundle / "pipeline" / "train.py").write_text("def fit(n):\n    return {'fitted': n}\n")
    (bundle / "main.py").write_text("def main(context):\n    return {'task': context.task}\n")
    context.bundle_dir = bundle
    params: dict[str, Any] = {"bundle": "b", "entrypoint": "pipeline.train.fit", "args": {"n": 1}}
    assert tasks.run_python(params, {}, context) == {"fitted": 1}
    assert tasks.run_python({"bundle": "b"}, {}, context) == {"task": "step"}
    context.bundle_dir = None
    with pytest.raises(RuntimeError, match="was not prepared"):
        tasks.run_python({"bundle": "b"}, {}, context)
