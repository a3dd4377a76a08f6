"""Artifacts leave a dead sandbox: copied out by descriptor, never by following a name.

The copy starts only once every process of the sandbox is dead (its PID namespace is gone
and its uid is its own), so nothing can swap a file for a link meanwhile; even so nothing
here follows a symbolic link: each directory and file is opened relative to its parent's
descriptor with ``O_NOFOLLOW``, only regular files with a single link are taken, and the
sizes are capped. The copies go to a directory the task never saw (root's, 0700), which is
what the worker uploads.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import structlog

log = structlog.get_logger("armillary.workflows.execution")

MAX_DEPTH = 16
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class Limits:
    """How much of a task's artifacts is taken."""

    def __init__(self, max_files: int, max_file_bytes: int, max_total_bytes: int) -> None:
        self.max_files = max_files
        self.max_file_bytes = max_file_bytes
        self.max_total_bytes = max_total_bytes


def collect(source: Path, dest: Path, limits: Limits) -> dict[str, Path]:
    """Copy the regular files under ``source`` into the new directory ``dest``; returns the
    copies by relative name. What is skipped (links, devices, too large) is logged."""
    dest.mkdir(mode=0o700)
    found: dict[str, Path] = {}
    totals = {"bytes": 0}
    try:
        root = os.open(source, _DIR_FLAGS)
    except OSError:
        return found
    try:
        _walk(root, "", dest, limits, found, totals, 0)
    finally:
        os.close(root)
    return dict(sorted(found.items()))


def _walk(
    directory: int,
    prefix: str,
    dest: Path,
    limits: Limits,
    found: dict[str, Path],
    totals: dict[str, int],
    depth: int,
) -> None:
    if depth > MAX_DEPTH:
        log.warning("sandbox.artifacts_too_deep", at=prefix)
        return
    for name in sorted(os.listdir(directory)):
        relative = f"{prefix}{name}"
        try:
            info = os.stat(name, dir_fd=directory, follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode):
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=directory)
            except OSError:
                continue
            try:
                _walk(child, relative + "/", dest, limits, found, totals, depth + 1)
            finally:
                os.close(child)
            continue
        if not stat.S_ISREG(info.st_mode):
            continue  # links, sockets, fifos, devices: never followed nor read
        if len(found) >= limits.max_files:
            log.warning("sandbox.artifact_skipped", reason="too many files")
            return
        copy = _copy_one(directory, name, dest, relative, limits, totals)
        if copy is not None:
            found[relative] = copy


def _copy_one(
    directory: int, name: str, dest: Path, relative: str, limits: Limits, totals: dict[str, int]
) -> Path | None:
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=directory)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as source:
        info = os.fstat(source.fileno())
        # A hard link would make the worker copy a file the task did not write.
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            return None
        if info.st_size > limits.max_file_bytes:
            log.warning("sandbox.artifact_skipped", reason="file too large")
            return None
        if totals["bytes"] + info.st_size > limits.max_total_bytes:
            log.warning("sandbox.artifact_skipped", reason="artifacts too large")
            return None
        target = dest / relative
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        copied = 0
        with open(target, "xb") as out:
            while chunk := source.read(1024**2):
                copied += len(chunk)
                if copied > limits.max_file_bytes:
                    break
                out.write(chunk)
        if copied > limits.max_file_bytes:
            with contextlib.suppress(OSError):
                target.unlink()
            return None
        totals["bytes"] += copied
        return target
