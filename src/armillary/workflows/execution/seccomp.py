"""The seccomp filter of every task sandbox, compiled with libseccomp (``pyseccomp``).

bubblewrap loads it (``bwrap --seccomp FD``) just before it runs the task's command, so it
covers the task and everything the task starts. It denies what a task never needs and what
an escape needs: debugging other processes, kernel keyrings, BPF, perf, userfaultfd (a tool
of kernel exploits), mounting and namespaces (a second sandbox inside is how one escapes the
first), kexec, kernel modules, io_uring (it bypasses seccomp by design) and ``personality``.
Sockets are limited to Unix, IPv4 and IPv6: netlink, packet and the rest are attack surface.
"""

from __future__ import annotations

import errno
import functools
import os
import tempfile

import pyseccomp

# Denied with EPERM: programs handle "not permitted" better than a killed process.
DENIED_SYSCALLS: tuple[str, ...] = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "mount",
    "umount2",
    "pivot_root",
    "setns",
    "unshare",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "personality",
)
# clone() flags that create namespaces; clone() without them (threads, fork) stays allowed.
NAMESPACE_FLAGS: tuple[int, ...] = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)
ALLOWED_SOCKET_FAMILIES: tuple[int, ...] = (1, 2, 10)  # AF_UNIX, AF_INET, AF_INET6
_AF_MAX = 46  # families above this do not exist (socket() fails with EAFNOSUPPORT anyway)


def _build() -> pyseccomp.SyscallFilter:
    rules = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    deny = pyseccomp.ERRNO(errno.EPERM)
    for name in DENIED_SYSCALLS:
        rules.add_rule(deny, name)
    for flag in NAMESPACE_FLAGS:
        rules.add_rule(deny, "clone", pyseccomp.Arg(0, pyseccomp.MASKED_EQ, flag, flag))
    # clone3 passes its flags in memory, where a filter cannot look: ENOSYS makes the C
    # library fall back to clone(), which the rules above see.
    rules.add_rule(pyseccomp.ERRNO(errno.ENOSYS), "clone3")
    no_family = pyseccomp.ERRNO(errno.EAFNOSUPPORT)
    for family in range(_AF_MAX + 1):
        if family not in ALLOWED_SOCKET_FAMILIES:
            rules.add_rule(no_family, "socket", pyseccomp.Arg(0, pyseccomp.EQ, family))
    rules.add_rule(no_family, "socket", pyseccomp.Arg(0, pyseccomp.GT, _AF_MAX))
    return rules


@functools.cache
def filter_program() -> bytes:
    """The compiled BPF program (the format ``bwrap --seccomp`` reads), built once."""
    with tempfile.TemporaryFile() as out:
        _build().export_bpf(out)
        out.seek(0)
        return out.read()


def program_fd() -> int:
    """A pipe's read end holding the program, for one ``bwrap --seccomp FD`` (which reads it
    to the end). The caller passes it to bwrap and closes it."""
    program = filter_program()
    read_end, write_end = os.pipe()
    try:
        # A pipe holds 64 KiB; the program is a few KiB, so this never blocks.
        os.write(write_end, program)
    finally:
        os.close(write_end)
    return read_end
