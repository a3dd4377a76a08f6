"""Where one authenticated ``GET /api/v1/projects/{slug}`` spends its time, layer by layer.

    .venv/bin/python bench/auth_get/profile.py [--requests 3000]

Runs the embedded platform in-process (``create_app``, the benchmark's settings: PostgreSQL
database ``armillary_bench`` recreated, Redis db 13 flushed, log level WARNING) on uvloop and
sends requests one after another through ``httpx.ASGITransport``. No extra dependency: a
stdlib sampling profiler (a SIGALRM handler reading the main thread's stack about every
0.5 ms of wall time) charges each sample to a layer:

* on CPU: the innermost frame on the stack that belongs to a layer (so the redis client
  called by the rate limiter counts as rate limiting, by the cache as authorization);
* waiting: when the event loop is idle (or in C code with no Python frame, such as asyncpg's
  protocol or uvloop), the sample goes to the layer whose coroutine the request is awaiting,
  found by walking the request task's await chain.

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
import sys
import signal
import time
import types
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import PROJECT_PATH, BenchConfig, prepare_services, seed_async  # noqa: E402

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
    ("/sqlalchemy/", "ORM / DB"),
    ("/asyncpg/", "ORM / DB"),
    ("/armillary/kit/db.py", "ORM / DB"),
    ("/armillary/kit/deps.py", "ORM / DB"),
    ("/armillary/kit/events.py", "ORM / DB"),
    ("/armillary/identity/projects/service.py", "ORM / DB"),
    ("/armillary/identity/projects/repository.py", "ORM / DB"),
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
    "token verification", "rate limit", "authorization + cache", "ORM / DB",
    "logging + request context", "metrics", "audit middleware",
    "FastAPI / Starlette (routing, validation, JSON)", LOOP, BACKGROUND, CLIENT,
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
                r for r in gc.get_referents(obj)
                if isinstance(r, types.CoroutineType | types.AsyncGeneratorType | types.GeneratorType | asyncio.Future)
            ]
            frame, obj = None, (inner[0] if inner else None)
        if frame is not None:
            frames.append(frame)
    return frames


class Sampler:
    """Samples the main thread from a SIGALRM handler (ITIMER_REAL, wall clock).

    The handler runs in the main thread at the next bytecode boundary, so a long C call (an
    Ed25519 check, pydantic-core) is charged to the Python frame that made it, and an idle
    event loop is seen as idle. Each sample is weighted by the wall time since the previous
    one, leaving out the handler's own time.
    """

    def __init__(self, task: asyncio.Task[Any], interval: float) -> None:
        self.task = task
        self.interval = interval
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)
        self.samples = 0
        self.last = 0.0

    def _handler(self, _signum: int, frame: types.FrameType | None) -> None:
        elapsed = time.perf_counter() - self.last
        self.seconds[self.classify(frame)] += elapsed
        self.samples += 1
        self.last = time.perf_counter()

    def start(self) -> None:
        signal.signal(signal.SIGALRM, self._handler)
        self.last = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, self.interval, self.interval)

    def stop(self) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)

    def classify(self, frame: types.FrameType | None) -> tuple[str, str]:
        stack: list[types.FrameType] = []
        while frame is not None:
            stack.append(frame)
            frame = frame.f_back
        if any(f.f_code.co_name == "run_relay" for f in stack):
            return BACKGROUND, "cpu"
        executing = bool(stack) and not stack[0].f_code.co_filename.endswith(_IDLE_FILES)
        if executing:
            for f in stack:
                layer = owner(f.f_code.co_filename)
                if layer is not None:
                    return layer, "cpu"
        # Idle, or a loop callback with no layer on the stack (an I/O callback): charge the
        # layer the request is waiting on.
        for f in reversed(awaited_frames(self.task.get_coro())):
            layer = owner(f.f_code.co_filename)
            if layer is not None:
                return layer, "cpu" if executing else "wait"
        return LOOP, "cpu" if executing else "wait"


async def drive(config: BenchConfig, requests: int, warmup: int, interval: float) -> dict[str, Any]:
    import httpx

    from armillary.app import create_app

    try:
        app = create_app(config.settings())
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                seed = await seed_async(client, config)
                headers = {"Authorization": f"Bearer {seed.token}"}

                async def one() -> None:
                    response = await client.get(PROJECT_PATH, headers=headers)
                    if response.status_code != 200:
                        raise SystemExit(f"profile: got {response.status_code}: {response.text}")

                for _ in range(warmup):
                    await one()
                # Plain timing first (no sampler), then the sampled pass.
                cpu_started, started = time.thread_time(), time.perf_counter()
                for _ in range(requests):
                    await one()
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
    finally:
        config.cleanup()
    return {
        "requests": requests, "plain_s": plain, "plain_cpu_s": plain_cpu,
        "sampled_s": sampled, "sampled_cpu_s": sampled_cpu, "sampler": sampler,
    }


def render(data: dict[str, Any]) -> str:
    sampler: Sampler = data["sampler"]
    n = data["requests"]
    per = {
        layer: (sampler.seconds.get((layer, "cpu"), 0.0) / n * 1e3, sampler.seconds.get((layer, "wait"), 0.0) / n * 1e3)
        for layer in ORDER
    }
    server = {k: v for k, v in per.items() if k != CLIENT}
    server_cpu = sum(c for c, _ in server.values())
    server_total = sum(c + w for c, w in server.values())
    lines = [
        "## Profile: cost of each layer per request",
        "",
        f"In-process (no uvicorn), one request at a time, {n} requests after warm-up, uvloop; "
        f"unprofiled pass {data['plain_s'] / n * 1e3:.2f} ms per request, sampled pass "
        f"{data['sampled_s'] / n * 1e3:.2f} ms ({sampler.samples} samples). 'On CPU' is Python "
        "running in that layer; 'waiting' is the request awaiting that layer's I/O (Redis, "
        "PostgreSQL) or its C code (asyncpg's protocol, uvloop).",
        "",
        "| layer | on CPU (ms/request) | waiting (ms/request) | share of server CPU | share of server time |",
        "|---|---:|---:|---:|---:|",
    ]
    for layer, (cpu, wait) in sorted(server.items(), key=lambda kv: -(kv[1][0] + kv[1][1])):
        if cpu + wait < 0.0005:
            continue
        lines.append(
            f"| {layer} | {cpu:.3f} | {wait:.3f} | {cpu / server_cpu:.0%} | {(cpu + wait) / server_total:.0%} |"
        )
    lines.append(f"| **server total** | **{server_cpu:.3f}** | **{server_total - server_cpu:.3f}** | 100% | 100% |")
    cpu, wait = per[CLIENT]
    lines.append(f"| {CLIENT} | {cpu:.3f} | {wait:.3f} | | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--interval", type=float, default=0.0005, help="seconds between samples")
    parser.add_argument("--markdown-out", type=Path)
    args = parser.parse_args()

    import uvloop

    config = BenchConfig()
    prepare_services(config)  # before the loop: it runs its own (asyncpg, Alembic)
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    data = asyncio.run(drive(config, args.requests, args.warmup, args.interval))
    report = render(data)
    if args.markdown_out:
        args.markdown_out.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
