"""The sandbox's API socket binds wherever the worker's home is, however deep."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from armillary.workflows.execution.api_proxy import ApiProxy


async def test_a_socket_deeper_than_an_address_can_hold_still_listens(tmp_path: Path) -> None:
    # A socket address holds 107 bytes of path; this one is far longer.
    directory = tmp_path / ("d" * 60) / ("e" * 60)
    directory.mkdir(parents=True)
    path = directory / "slot-0123456789abcdef0123456789abcdef.sock"
    assert len(str(path).encode()) > 108
    proxy = ApiProxy()
    await proxy.listen_unix(path, owner=None)
    try:
        assert path.is_socket()
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        fd = os.open(directory, os.O_PATH | os.O_DIRECTORY)
        try:
            transport = httpx.AsyncHTTPTransport(uds=f"/proc/self/fd/{fd}/{path.name}")
            async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
                response = await client.get("/api/v1/projects")
        finally:
            os.close(fd)
        # Not yet authorised for an attempt: refused, but answered through the socket.
        assert response.status_code == 503
        assert proxy.requests == 1
    finally:
        await proxy.close()
