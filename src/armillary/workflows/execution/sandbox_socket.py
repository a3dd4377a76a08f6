"""The worker's end of a Unix socket bound into a sandbox (the API proxy's, the egress proxy's)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def listen(handler: Handler, path: Path, owner: int | None) -> asyncio.AbstractServer:
    """Serve ``handler`` on a Unix socket created at ``path``: 0600, owned by the sandbox's uid
    ``owner`` when there is one (the only user that may connect)."""
    # A socket address holds 107 bytes of path, less than a deep ARMILLARY_HOME needs.
    # Binding through a descriptor of the directory keeps the address short whatever the
    # directory's own path (/proc/self/fd/N resolves to it).
    directory = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        server = await asyncio.start_unix_server(
            handler, path=f"/proc/self/fd/{directory}/{path.name}"
        )
    finally:
        os.close(directory)
    os.chmod(path, 0o600)
    if owner is not None:
        os.chown(path, owner, owner)
    return server
