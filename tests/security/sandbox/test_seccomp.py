"""One test per syscall the sandbox's seccomp filter denies: each is attempted from inside a
real sandbox through ctypes, and must fail with EPERM (sockets: EAFNOSUPPORT)."""

from __future__ import annotations

import errno

import pytest
from tests.security.sandbox.conftest import python

from armillary.workflows.execution.local import LocalExecutor
from armillary.workflows.execution.protocol import Outcome
from armillary.workflows.execution.seccomp import DENIED_SYSCALLS

CALL = """
import ctypes, ctypes.util, errno
def main(name, args):
    libc = ctypes.CDLL(None, use_errno=True)
    number = {numbers}[name]
    result = libc.syscall(number, *[ctypes.c_long(a) for a in args])
    return {{"result": result, "errno": ctypes.get_errno()}}
"""
# x86-64 syscall numbers (the machine the suite runs on).
NUMBERS = {
    "ptrace": 101,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "keyctl": 250,
    "add_key": 248,
    "request_key": 249,
    "bpf": 321,
    "perf_event_open": 298,
    "userfaultfd": 323,
    "mount": 165,
    "umount2": 166,
    "pivot_root": 155,
    "setns": 308,
    "unshare": 272,
    "kexec_load": 246,
    "kexec_file_load": 320,
    "init_module": 175,
    "finit_module": 313,
    "delete_module": 176,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "personality": 135,
    "clone": 56,
}
SOURCE = CALL.format(numbers=NUMBERS)


def test_every_denied_syscall_is_tested() -> None:
    assert set(DENIED_SYSCALLS) <= set(NUMBERS)


async def _call(executor: LocalExecutor, name: str, args: list[int]) -> dict[str, int]:
    result = await executor.run(python(SOURCE, args={"name": name, "args": args}))
    assert result.outcome == Outcome.SUCCEEDED, result.error
    assert result.outputs is not None
    result.cleanup()
    return result.outputs


@pytest.mark.parametrize("name", DENIED_SYSCALLS)
async def test_denied_syscall_fails_with_eperm(executor: LocalExecutor, name: str) -> None:
    # Inside a real sandbox; test_the_filter_itself_answers_eperm shows that the EPERM is the
    # filter's and not the kernel's answer to a missing capability.
    outputs = await _call(executor, name, [0, 0, 0, 0, 0, 0])
    assert (outputs["result"], outputs["errno"]) == (-1, errno.EPERM)


async def test_clone_with_a_namespace_flag_is_denied_but_fork_works(
    executor: LocalExecutor,
) -> None:
    source = """
import ctypes, os
def main():
    libc = ctypes.CDLL(None, use_errno=True)
    CLONE_NEWUSER = 0x10000000
    SIGCHLD = 17
    # clone(flags, stack=0, ...): with a namespace flag the filter answers before the kernel.
    result = libc.syscall(56, ctypes.c_long(CLONE_NEWUSER | SIGCHLD), 0, 0, 0, 0)
    err = ctypes.get_errno()
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    _, status = os.waitpid(pid, 0)
    return {"clone": [result, err], "fork_exit": os.waitstatus_to_exitcode(status)}
"""
    result = await executor.run(python(source))
    assert result.outcome == Outcome.SUCCEEDED, result.error
    assert result.outputs == {"clone": [-1, errno.EPERM], "fork_exit": 7}
    result.cleanup()


async def test_an_unprivileged_call_the_kernel_would_allow_is_denied(
    executor: LocalExecutor,
) -> None:
    # personality(0xffffffff) only queries the persona: the kernel allows it to anyone, so
    # EPERM here can come only from the filter.
    outputs = await _call(executor, "personality", [0xFFFFFFFF])
    assert (outputs["result"], outputs["errno"]) == (-1, errno.EPERM)


async def test_sockets_other_than_unix_and_ip_are_refused(executor: LocalExecutor) -> None:
    source = """
import socket
def main():
    found = {}
    for name in ("AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET", "AF_VSOCK"):
        family = getattr(socket, name)
        kind = socket.SOCK_DGRAM if name in ("AF_NETLINK", "AF_PACKET") else socket.SOCK_STREAM
        try:
            socket.socket(family, kind).close()
            found[name] = "ok"
        except OSError as exc:
            found[name] = exc.errno
    return found
"""
    result = await executor.run(python(source))
    assert result.outcome == Outcome.SUCCEEDED, result.error
    outputs = result.outputs
    assert outputs is not None
    assert (outputs["AF_UNIX"], outputs["AF_INET"], outputs["AF_INET6"]) == ("ok", "ok", "ok")
    for name in ("AF_NETLINK", "AF_PACKET", "AF_VSOCK"):
        assert outputs[name] == errno.EAFNOSUPPORT, name
    result.cleanup()


# Arguments that make each call fail harmlessly, and not with EPERM, for root without the
# filter (bad addresses, bad descriptors, invalid flags), so that EPERM can come only from it.
HARMLESS: dict[str, list[int]] = {
    "ptrace": [0, 0, 0, 0],  # PTRACE_TRACEME: succeeds without the filter
    "process_vm_readv": [0, 0, 0, 0, 0, 0],  # pid 0: ESRCH
    "process_vm_writev": [0, 0, 0, 0, 0, 0],
    "keyctl": [0xFFFF, 0, 0, 0, 0],  # unknown operation: EOPNOTSUPP
    "add_key": [0, 0, 0, 0, 0],  # NULL type: EFAULT
    "request_key": [0, 0, 0, 0],
    "bpf": [0, 0, 0],  # NULL attr: EFAULT (root)
    "perf_event_open": [0, 0, 0, 0, 0],  # NULL attr: EFAULT
    "userfaultfd": [0xFFFFFFFF],  # unknown flags: EINVAL
    "mount": [0, 0, 0, 0, 0],  # NULL target: EFAULT
    "umount2": [0, 0],
    "pivot_root": [0, 0],
    "setns": [-1, 0],  # EBADF
    "unshare": [0],  # no flags: succeeds without the filter
    "kexec_load": [0, 0, 0, 0xFFFFFFFF],  # invalid flags: EINVAL
    "kexec_file_load": [-1, -1, 0, 0, 0],  # EBADF
    "init_module": [0, 0, 0],  # EFAULT
    "finit_module": [-1, 0, 0],  # EBADF
    "delete_module": [0, 0],  # EFAULT
    "io_uring_setup": [0, 0],  # EINVAL/EFAULT
    "io_uring_enter": [-1, 0, 0, 0, 0, 0],  # EBADF
    "io_uring_register": [-1, 0, 0, 0],
    "personality": [0xFFFFFFFF],  # a query: succeeds
}


def _errno_in_child(name: str, with_filter: bool) -> int:
    """Run syscall ``name`` in a forked child (with or without the filter loaded) and return
    its errno (0: it succeeded)."""
    import ctypes
    import os

    from armillary.workflows.execution import seccomp

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = 255
        try:
            if with_filter:
                seccomp._build().load()
            libc = ctypes.CDLL(None, use_errno=True)
            args = [ctypes.c_long(a) for a in HARMLESS[name]]
            result = libc.syscall(NUMBERS[name], *args)
            code = 0 if result >= 0 else ctypes.get_errno()
        finally:
            os.write(write_end, code.to_bytes(2, "big"))
            os._exit(0)
    os.close(write_end)
    data = os.read(read_end, 2)
    os.close(read_end)
    os.waitpid(pid, 0)
    return int.from_bytes(data, "big")


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
@pytest.mark.parametrize("name", DENIED_SYSCALLS)
def test_the_filter_itself_answers_eperm(name: str) -> None:
    """As root (which the kernel would let through or fail differently) the call fails with
    EPERM only once the filter is loaded: the denial is the filter's, not a missing
    capability's."""
    import os

    if os.geteuid() != 0:
        pytest.skip("the control call needs root's capabilities")
    assert _errno_in_child(name, with_filter=False) != errno.EPERM
    assert _errno_in_child(name, with_filter=True) == errno.EPERM
