"""The work root: where attempts' private directories live, checked before any is made.

A predictable directory another user created first (``/tmp/armillary-work-…``) must never be
used: its owner could swap what is inside for links and make the worker write or chmod as
root wherever they point. So the root must be a real directory (not a link), owned by the
worker's user, and private (0700); one that does not exist yet is created so.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path


class UnsafeWorkRoot(RuntimeError):
    """The work root is a link, someone else's, or open to others."""


def ensure_private(path: Path) -> None:
    """Create ``path`` (0700) if missing; refuse it if it is a symbolic link or another
    user's; make it 0700 if it is ours."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise UnsafeWorkRoot(f"the work root {path} is not a directory (a link is refused)")
    if info.st_uid != os.geteuid():
        raise UnsafeWorkRoot(f"the work root {path} belongs to another user (uid {info.st_uid})")
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700, follow_symlinks=False)
