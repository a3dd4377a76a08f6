"""Loopback ports for the processes tests start.

A port is chosen below the kernel's ephemeral range: a test picks it, then a process binds
it only after a slow start, and a port in the ephemeral range may be taken meanwhile by any
outgoing connection on the machine (a clean-clone run failed on `metrics.listener_failed`,
Address already in use). The bind check and a random start keep parallel xdist workers
apart.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_LOWEST = 20_000


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_port_range(count: int) -> int:
    """The first of ``count`` consecutive loopback ports that are free now."""
    high = _ephemeral_low() - count
    for _ in range(500):
        first = random.randrange(_LOWEST, high)
        try:
            for port in range(first, first + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise AssertionError("no free loopback port range below the ephemeral range")


def free_port() -> int:
    """A loopback port that is free now."""
    return free_port_range(1)
