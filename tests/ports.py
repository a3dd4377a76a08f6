"""Loopback ports for the processes tests start.

A port is chosen below the kernel's ephemeral range: a test picks it, then a process binds
it only after a slow start, and a port in the ephemeral range may be taken meanwhile by any
outgoing connection on the machine (a clean-clone run failed on `metrics.listener_failed`,
Address already in use). Each xdist worker hands out ports from a slice of its own, in
order, so two workers never pick the same port and one worker never picks a port twice
before it wraps around; a port something else holds is skipped (the bind check).
"""

from __future__ import annotations

import itertools
import os
import random
import socket
from collections.abc import Iterator
from pathlib import Path

_LOWEST = 20_000
_SLICES = 8  # xdist workers at most


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _worker_slice() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or "0"
    size = (_ephemeral_low() - _LOWEST) // _SLICES
    first = _LOWEST + (int(worker) % _SLICES) * size
    return range(first, first + size)


_SLICE = _worker_slice()


def _cursor() -> Iterator[int]:
    ports = _SLICE
    # A random start: another pytest session on the machine starts elsewhere in the slice.
    start = random.randrange(len(ports))
    return itertools.cycle([*ports[start:], *ports[:start]])


_NEXT = _cursor()


def free_port_range(count: int) -> int:
    """The first of ``count`` consecutive loopback ports that are free now."""
    for _ in range(2_000):
        first = next(_NEXT)
        if first + count > _SLICE.stop:  # would reach into the next worker's slice
            continue
        try:
            for port in range(first, first + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        # The next range starts after this one, so none of its ports is handed out again.
        for _ in range(count - 1):
            next(_NEXT)
        return first
    raise AssertionError("no free loopback port range below the ephemeral range")


def free_port() -> int:
    """A loopback port that is free now."""
    return free_port_range(1)
