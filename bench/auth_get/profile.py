"""Where one authenticated ``GET /api/v1/projects/{slug}`` spends its time, layer by layer.

    .venv/bin/python bench/auth_get/profile.py [--requests 3000]

Runs the embedded platform in-process (``create_app``, the benchmark's settings: PostgreSQL
database ``armillary_bench`` recreated, Redis db 13 flushed, log level WARNING) on uvloop and
sends requests one after another through ``httpx.ASGITransport``. No extra dependency: a
stdlib sampling profiler (a SIGALRM handler reading the main thread's stack every 1 ms of
wall time) charges each sample to one layer:

* when Python is running: the innermost frame on the stack that belongs to a layer (so the
  redis client called by the rate limiter counts as rate limiting, by the cache as
  authorization);
* when the event loop is idle, or runs a callback no layer owns: the layer whose coroutine
  the request is suspended in, found by walking the request task's await chain.

"On CPU" is the main thread's CPU time (``time.thread_time``) shared out by running samples;
"waiting" is idle-loop time: round trips to Redis and PostgreSQL.

Layers: token verification (kit/security.py, PyJWT, cryptography), rate limit
(kit/ratelimit.py, limits), authorization + cache (kit/authz.py, kit/cache.py), ORM/DB
(SQLAlchemy, asyncpg, kit/db.py, the project service), logging + request context (structlog,
logging, kit/logging.py, kit/request_context.py), metrics (prometheus_client, kit/metrics.py),
audit middleware, FastAPI/Starlette routing + validation + serialization. uvicorn's HTTP
handling is not in this process (the floor1 row of the wrk table prices it).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import re
import signal
import statistics
import sys
import time
import types
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import PROJECT_PATH, BenchConfig, prepare_services, seed_async

ORM = "ORM / DB"
CLIENT = "bench client (httpx ASGITransport; not server work)"
# (substring of a frame's file name, layer). Libraries used by several layers (redis, pydantic,
# anyio, asyncio) are on purpose absent: their time goes to the layer that called them.
RULES: list[tuple[str, str]] = [
    ("/armillary/kit/security.py", "token verification"),
    ("/jwt/", "token verification"),
    ("/cryptography/", "token verification"),
    ("/armillary/kit/ratelimit.py", "rate limit"),
    ("/limits/", "rate limit"),
    ("/armillary/kit/authz.py", "authorization + cache"),
    ("/armillary/kit/cache.py", "authorization + cache"),
    ("/armillary/identity/client.py", "authorization + cache"),
    ("/sqlalchemy/", ORM),
    ("/asyncpg/", ORM),
    ("/armillary/kit/db.py", ORM),
    ("/armillary/kit/deps.py", ORM),
    ("/armillary/kit/events.py", ORM),
    ("/armillary/identity/projects/service.py", ORM),
    ("/armillary/identity/projects/repository.py", ORM),
    ("/structlog/", "logging + request context"),
    ("/logging/__init__.py", "logging + request context"),
    ("/armillary/kit/logging.py", "logging + request context"),
    ("/armillary/kit/redaction.py", "logging + request context"),
    ("/armillary/kit/request_context.py", "logging + request context"),
    ("/armillary/kit/context.py", "logging + request context"),
    ("/armillary/kit/client_address.py", "logging + request context"),
    ("/prometheus_client/", "metrics"),
    ("/armillary/kit/metrics.py", "metrics"),
    ("/armillary/kit/audit.py", "audit middleware"),
    ("/armillary/identity/projects/api.py", "FastAPI / Starlette (routing, validation, JSON)"),
    ("/fastapi/", "FastAPI / Starlette (routing, validation, JSON)"),
    ("/starlette/", "FastAPI / Starlette (routing, validation, JSON)"),
    ("/armillary/kit/problems.py", "FastAPI / Starlette (routing, validation, JSON)"),
    ("/armillary/kit/errors.py", "FastAPI / Starlette (routing, validation, JSON)"),
    ("/httpx/", CLIENT),
    ("/httpcore/", CLIENT),
    (str(Path(__file__).resolve()), CLIENT),
]
BACKGROUND = "background (outbox relay)"
LOOP = "event loop (no layer on the stack)"
ORDER = [
    "token verification",
    "rate limit",
    "authorization + cache",
    ORM,
    "logging + request context",
    "metrics",
    "audit middleware",
    "FastAPI / Starlette (routing, validation, JSON)",
    LOOP,
    BACKGROUND,
    CLIENT,
]
_IDLE_FILES = ("asyncio/runners.py", "asyncio/base_events.py", "selectors.py")
_cache: dict[str, str | None] = {}


def owner(filename: str) -> str | None:
    try:
        return _cache[filename]
    except KeyError:
        found = next((layer for part, layer in RULES if part in filename), None)
        _cache[filename] = found
        return found


def awaited_frames(obj: Any) -> list[types.FrameType]:
    """Frames of the coroutines a suspended task is awaiting, outermost first."""
    frames: list[types.FrameType] = []
    for _ in range(512):
        if obj is None:
            break
        if isinstance(obj, types.CoroutineType):
            frame, obj = obj.cr_frame, obj.cr_await
        elif isinstance(obj, types.AsyncGeneratorType):
            frame, obj = obj.ag_frame, obj.ag_await
        elif isinstance(obj, types.GeneratorType):
            frame, obj = obj.gi_frame, obj.gi_yieldfrom
        elif isinstance(obj, asyncio.Task):
            frame, obj = None, obj.get_coro()
        elif isinstance(obj, asyncio.Future):
            break
        else:
            # async_generator_asend, FutureIter, coroutine_wrapper: follow what they wrap.
            inner = [
                r
                for r in gc.get_referents(obj)
                if isinstance(
                    r,
                    types.CoroutineType
                    | types.AsyncGeneratorType
                    | types.GeneratorType
                    | asyncio.Future,
                )
            ]
            frame, obj = None, (inner[0] if inner else None)
        if frame is not None:
            frames.append(frame)
    return frames


class Sampler:
    """Samples the main thread from a SIGALRM handler (ITIMER_REAL: uniform in wall time).

    The handler runs in the main thread at the next bytecode boundary, so a long C call (an
    Ed25519 check, pydantic-core) counts for the Python frame that made it; when the event
    loop is idle the signal wakes it and the handler sees the idle frame. Each sample records
    one layer and whether the loop was idle (the request waiting on that layer's I/O) or
    running. Wall time is shared out by sample counts; the main thread's CPU time
    (``time.thread_time``) is shared out among layers by their running samples. The handler's
    own time is measured and left out.
    """

    def __init__(self, task: asyncio.Task[Any], interval: float) -> None:
        self.task = task
        self.interval = interval
        self.counts: dict[tuple[str, bool], int] = defaultdict(int)
        self.phases: dict[tuple[str, bool], int] = defaultdict(int)
        self.spots: dict[tuple[str, str], int] = defaultdict(int)
        self.samples = 0
        self.handler_seconds = 0.0

    def _handler(self, _signum: int, frame: types.FrameType | None) -> None:
        started = time.perf_counter()
        layer, idle, frames = self.classify(frame)
        self.counts[(layer, idle)] += 1
        if layer == ORM:
            self.phases[(orm_phase(frames), idle)] += 1
        elif not idle and frames:
            code = frames[0].f_code
            self.spots[(layer, f"{_short(code.co_filename)}:{code.co_name}")] += 1
        self.samples += 1
        self.handler_seconds += time.perf_counter() - started

    def start(self) -> None:
        signal.signal(signal.SIGALRM, self._handler)
        signal.setitimer(signal.ITIMER_REAL, self.interval, self.interval)

    def stop(self) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)

    def classify(self, frame: types.FrameType | None) -> tuple[str, bool, list[types.FrameType]]:
        """(layer, idle, frames from the layer's innermost frame outwards): the innermost
        layer on the stack when Python is running; when the loop is idle, or runs a callback
        no layer owns, the layer the request is suspended in."""
        stack: list[types.FrameType] = []
        while frame is not None:
            stack.append(frame)
            frame = frame.f_back
        idle = not stack or stack[0].f_code.co_filename.endswith(_IDLE_FILES)
        if not idle:
            if any(f.f_code.co_name == "run_relay" for f in stack):
                return BACKGROUND, False, []
            for i, f in enumerate(stack):
                layer = owner(f.f_code.co_filename)
                if layer is not None:
                    return layer, False, stack[i:]
        chain = list(reversed(awaited_frames(self.task.get_coro())))
        for i, f in enumerate(chain):
            layer = owner(f.f_code.co_filename)
            if layer is not None:
                return layer, idle, chain[i:]
        return LOOP, idle, []


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/src/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename.rsplit("/", 2)[-1]


# What the ORM / DB time is spent on: the first of these phases whose functions are on the
# stack (SQLAlchemy's async side and its greenlet side both name them). Order matters: the
# pre-ping and BEGIN run inside the checkout, which runs inside the SELECT's execute.
_ORM_FILES = ("/sqlalchemy/", "/asyncpg/", "/armillary/kit/db.py", "/armillary/kit/deps.py")
_PHASES: list[tuple[frozenset[str], str]] = [
    (
        frozenset({"_async_ping", "do_ping", "_do_ping_w_event", "ping"}),
        "pool pre-ping (BEGIN; ';'; ROLLBACK)",
    ),
    (frozenset({"commit", "_commit", "do_commit", "_do_commit", "_prepare_impl"}), "COMMIT"),
    (
        frozenset(
            {
                "close",
                "_close_impl",
                "_finalize_fairy",
                "_reset",
                "reset",
                "rollback",
                "do_rollback",
                "expunge_all",
                "dispose",
            }
        ),
        "session close, connection return",
    ),
    (
        frozenset(
            {
                "_connection_for_bind",
                "_checkout",
                "checkout",
                "_start_transaction",
                "begin",
                "_begin",
                "connect",
            }
        ),
        "pool checkout, BEGIN",
    ),
    (
        frozenset(
            {
                "_prepare_and_execute",
                "_prepare",
                "execute",
                "_execute_internal",
                "_get_impl",
                "get",
                "instances",
                "_load_on_pk_identity",
                "one",
                "fetchrow",
            }
        ),
        "SELECT: build, execute, load the object",
    ),
]
_OTHER_PHASE = "session set-up, unit of work, other"


def orm_phase(frames: list[types.FrameType]) -> str:
    """The first phase (in ``_PHASES`` order) any ORM frame on the stack names."""
    names = {f.f_code.co_name for f in frames if any(p in f.f_code.co_filename for p in _ORM_FILES)}
    for markers, phase in _PHASES:
        if names & markers:
            return phase
    return _OTHER_PHASE


def _statement_kind(sql: str) -> str:
    text = sql.strip()
    if text.rstrip(";").strip() == "":
        return "';' (ping)"
    word = text.split(None, 1)[0].rstrip(";").upper()
    if word == "SELECT":
        match = re.search(r"\bFROM\s+([\w.]+)", text, re.IGNORECASE)
        return f"SELECT {match.group(1)}" if match else "SELECT"
    return word


BASELINE = "as benchmarked (log level WARNING, rate limiting on)"
SWITCHES = {
    BASELINE: (True, logging.WARNING),
    "rate limiting off": (False, logging.WARNING),
    "access log on (level INFO, JSON lines to a file)": (True, logging.INFO),
}


async def switch_layers(
    app: Any, one: Any, log_path: Path, budget: float, block: int = 50, rounds: int = 20
) -> dict[str, Any]:
    """Main-thread CPU per request with one layer switched, in interleaved blocks so that a
    machine that gets busier or quieter during the pass affects every variant alike."""
    limiter = app.state.runtime.limiter
    root = logging.getLogger()
    handler = root.handlers[0] if root.handlers else None
    old_level = root.level
    cpu: dict[str, list[float]] = {name: [] for name in SWITCHES}
    started = time.perf_counter()
    with log_path.open("w") as log_file:
        old_stream = (
            handler.setStream(log_file) if isinstance(handler, logging.StreamHandler) else None
        )
        try:
            for done in range(rounds):
                if done >= 4 and time.perf_counter() - started > budget:
                    break
                for name, (limits_on, level) in SWITCHES.items():
                    limiter.enabled = limits_on
                    root.setLevel(level)
                    before = time.thread_time()
                    for _ in range(block):
                        await one()
                    cpu[name].append((time.thread_time() - before) / block * 1e3)
        finally:
            limiter.enabled = True
            root.setLevel(old_level)
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(old_stream)
    return {"block": block, "cpu_ms": cpu}


async def count_round_trips(app: Any, one: Any, requests: int) -> dict[str, Any]:
    """PostgreSQL statements and Redis commands per request (a separate, unsampled pass).

    SQLAlchemy's ``before_cursor_execute`` sees its statements; an asyncpg query logger sees
    the ones the driver adapter sends itself (BEGIN, COMMIT, ROLLBACK, the pre-ping). Redis
    commands are counted at ``redis.asyncio.Redis.execute_command``, by the calling layer.
    The outbox relay is stopped first so that only requests are counted.
    """
    import redis.asyncio.client as redis_client
    from sqlalchemy import event

    runtime = app.state.runtime
    for task in runtime.tasks:
        task.cancel()
    pg: Counter[str] = Counter()
    rd: Counter[str] = Counter()
    engine = runtime.db.engine

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(
            lambda record: pg.update([_statement_kind(record.query)])
        )

    def on_execute(*args: Any) -> None:
        pg.update([_statement_kind(args[2])])

    original = redis_client.Redis.execute_command

    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        frame: types.FrameType | None = sys._getframe(1)
        layer = "?"
        while frame is not None:
            found = owner(frame.f_code.co_filename)
            if found is not None:
                layer = found
                break
            frame = frame.f_back
        rd.update([f"{args[0]} ({layer})"])
        return await original(self, *args, **kwargs)

    event.listen(engine.sync_engine, "connect", on_connect)
    event.listen(engine.sync_engine, "before_cursor_execute", on_execute)
    await engine.dispose()  # new connections get the query logger
    redis_client.Redis.execute_command = counted  # type: ignore[method-assign]
    try:
        for _ in range(20):
            await one()
        pg.clear()
        rd.clear()
        for _ in range(requests):
            await one()
    finally:
        redis_client.Redis.execute_command = original  # type: ignore[method-assign]
        event.remove(engine.sync_engine, "before_cursor_execute", on_execute)
        event.remove(engine.sync_engine, "connect", on_connect)
    return {
        "postgres": {k: v / requests for k, v in pg.most_common()},
        "redis": {k: v / requests for k, v in rd.most_common()},
    }


async def drive(
    config: BenchConfig, requests: int, warmup: int, interval: float, budget: float
) -> dict[str, Any]:
    import httpx

    from armillary.app import create_app

    try:
        app = create_app(config.settings())
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://bench") as client,
        ):
            seed = await seed_async(client, config)
            headers = {"Authorization": f"Bearer {seed.token}"}

            async def one() -> None:
                response = await client.get(PROJECT_PATH, headers=headers)
                if response.status_code != 200:
                    raise SystemExit(f"profile: got {response.status_code}: {response.text}")

            for _ in range(warmup):
                await one()
            # Plain timing first (no sampler), then the sampled pass.
            # A busy machine must not stretch the run: stop early at the time budget, and
            # sample as many requests as the plain pass managed.
            cpu_started, started = time.thread_time(), time.perf_counter()
            done = 0
            while done < requests and time.perf_counter() - started < budget:
                await one()
                done += 1
            requests = done
            plain = time.perf_counter() - started
            plain_cpu = time.thread_time() - cpu_started

            task = asyncio.current_task()
            assert task is not None
            sampler = Sampler(task, interval)
            cpu_started = time.thread_time()
            sampler.start()
            started = time.perf_counter()
            for _ in range(requests):
                await one()
            sampled = time.perf_counter() - started
            sampler.stop()
            sampled_cpu = time.thread_time() - cpu_started

            switched = await switch_layers(app, one, config.home / "access.log", budget)
            round_trips = await count_round_trips(app, one, min(requests, 300))
    finally:
        config.cleanup()
    return {
        "requests": requests,
        "plain_s": plain,
        "plain_cpu_s": plain_cpu,
        "sampled_s": sampled,
        "sampled_cpu_s": sampled_cpu,
        "sampler": sampler,
        "round_trips": round_trips,
        "switched": switched,
    }


def layer_costs(data: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Per request, in ms: (on CPU, waiting) for every layer."""
    sampler: Sampler = data["sampler"]
    n = data["requests"]
    wall = data["sampled_s"] - sampler.handler_seconds
    cpu = data["sampled_cpu_s"] - sampler.handler_seconds
    per_sample = wall / max(1, sampler.samples)
    running = sum(c for (_, idle), c in sampler.counts.items() if not idle) or 1
    out = {}
    for layer in ORDER:
        run = sampler.counts.get((layer, False), 0)
        waited = sampler.counts.get((layer, True), 0)
        out[layer] = (cpu * run / running / n * 1e3, per_sample * waited / n * 1e3)
    return out


def render(data: dict[str, Any]) -> str:
    sampler: Sampler = data["sampler"]
    n = data["requests"]
    per = layer_costs(data)
    server = {k: v for k, v in per.items() if k != CLIENT}
    server_cpu = sum(c for c, _ in server.values())
    server_total = sum(c + w for c, w in server.values())
    running = sum(c for (_, idle), c in sampler.counts.items() if not idle)
    wall = data["sampled_s"] - sampler.handler_seconds
    cpu = data["sampled_cpu_s"] - sampler.handler_seconds
    off_cpu = max(0.0, wall * running / max(1, sampler.samples) - cpu)
    lines = [
        "## Profile: cost of each layer per request",
        "",
        f"In-process (no uvicorn), one request at a time, {n} requests after warm-up, uvloop. "
        f"Unprofiled pass: {data['plain_s'] / n * 1e3:.2f} ms wall and "
        f"{data['plain_cpu_s'] / n * 1e3:.2f} ms CPU per request (test client included). "
        f"Sampled pass: {data['sampled_s'] / n * 1e3:.2f} ms wall, "
        f"{data['sampled_cpu_s'] / n * 1e3:.2f} ms CPU, {sampler.samples} samples, "
        f"{sampler.handler_seconds / n * 1e3:.3f} ms of sampler per request left out. "
        "'On CPU' is the main thread's CPU time shared out by where Python was running (a C "
        "call counts for the layer that made it); 'waiting' is time the event loop sat idle "
        "while the request was suspended in that layer (Redis and PostgreSQL round trips). "
        f"Runnable but not on CPU (other processes on the cores): {off_cpu / n * 1e3:.3f} ms per request.",
        "",
        "| layer | on CPU (ms/request) | waiting (ms/request) | share of server CPU | share of server time |",
        "|---|---:|---:|---:|---:|",
    ]
    for layer, (c, w) in sorted(server.items(), key=lambda kv: -kv[1][0]):
        if c + w < 0.0005:
            continue
        lines.append(
            f"| {layer} | {c:.3f} | {w:.3f} | {c / server_cpu:.0%} | {(c + w) / server_total:.0%} |"
        )
    lines.append(
        f"| **server total** | **{server_cpu:.3f}** | **{server_total - server_cpu:.3f}** | 100% | 100% |"
    )
    c, w = per[CLIENT]
    lines.append(f"| {CLIENT} | {c:.3f} | {w:.3f} | | |")

    # ORM / DB by phase, on the same scale as the layer table.
    orm_run = sampler.counts.get((ORM, False), 0) or 1
    orm_idle = sampler.counts.get((ORM, True), 0) or 1
    orm_cpu, orm_wait = per[ORM]
    phases = sorted({phase for phase, _ in sampler.phases})
    lines += [
        "",
        "ORM / DB by phase:",
        "",
        "| phase | on CPU (ms/request) | waiting (ms/request) |",
        "|---|---:|---:|",
    ]
    rows = []
    for phase in phases:
        pc = orm_cpu * sampler.phases.get((phase, False), 0) / orm_run
        pw = orm_wait * sampler.phases.get((phase, True), 0) / orm_idle
        rows.append((pc + pw, f"| {phase} | {pc:.3f} | {pw:.3f} |"))
    lines += [row for _, row in sorted(rows, reverse=True)]

    # Where inside the other layers: the innermost function of the layer, top three each.
    lines += ["", "Hot spots (innermost function of the layer, share of its CPU samples):", ""]
    for layer, (c, _w) in sorted(server.items(), key=lambda kv: -kv[1][0]):
        if layer in (ORM, LOOP, BACKGROUND) or c < 0.01:
            continue
        spots = sorted(
            ((count, name) for (lay, name), count in sampler.spots.items() if lay == layer),
            reverse=True,
        )
        total = sum(count for count, _ in spots) or 1
        top = ", ".join(f"`{name}` {count / total:.0%}" for count, name in spots[:3])
        lines.append(f"- {layer}: {top}")

    switched = data["switched"]
    base = switched["cpu_ms"][BASELINE]
    lines += [
        "",
        f"One layer switched, in-process, interleaved blocks of {switched['block']} requests "
        f"({len(base)} rounds; main-thread CPU per request, test client included, so read the "
        "difference):",
        "",
        "| variant | CPU (ms/request, median) | difference (ms/request, median of rounds) |",
        "|---|---:|---:|",
    ]
    for name, values in switched["cpu_ms"].items():
        deltas = [v - b for v, b in zip(values, base, strict=True)]
        mean = statistics.median(values)
        delta = statistics.median(deltas)
        low, high = min(deltas), max(deltas)
        spread = "" if name == BASELINE else f" (rounds {low:+.3f} to {high:+.3f})"
        lines.append(
            f"| {name} | {mean:.3f} | {'—' if name == BASELINE else f'{delta:+.3f}'}{spread} |"
        )

    trips = data["round_trips"]
    pg_total = sum(trips["postgres"].values())
    rd_total = sum(trips["redis"].values())
    pg = ", ".join(f"{k} x{v:.2f}" for k, v in trips["postgres"].items())
    rd = ", ".join(f"{k} x{v:.2f}" for k, v in trips["redis"].items())
    lines += [
        "",
        "Round trips per request (counted in a separate pass, outbox relay stopped):",
        "",
        f"- PostgreSQL: {pg_total:.2f} ({pg}); the raw-asyncpg floor makes 1.",
        f"- Redis: {rd_total:.2f} ({rd}).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument(
        "--budget", type=float, default=20, help="at most this many seconds per timed pass"
    )
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--interval", type=float, default=0.001, help="seconds between samples")
    parser.add_argument("--markdown-out", type=Path)
    args = parser.parse_args()

    import uvloop

    config = BenchConfig()
    prepare_services(config)  # before the loop: it runs its own (asyncpg, Alembic)
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    data = asyncio.run(drive(config, args.requests, args.warmup, args.interval, args.budget))
    report = render(data)
    if args.markdown_out:
        args.markdown_out.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
