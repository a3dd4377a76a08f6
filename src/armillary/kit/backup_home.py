"""The files of ARMILLARY_HOME a backup carries besides the database and the objects: the
platform secret (``secret.key``, which signing keys and alert-channel secrets are encrypted
under), the service keys, and whatever else the platform keeps there. Without them a home
directory lost with its database cannot be brought back: the restored secrets would not
decrypt.

Everything under the home directory is taken except what the caller names as kept
elsewhere or rebuilt on its own (the database file, which the online backup copies; the
local object store, copied as objects; the audit checkpoint, copied apart; work and cache
directories). A listing of what to leave out, not of what to take, so a key file added later
is backed up without anyone remembering to add it here. Symbolic links and special files
are skipped: a link may point anywhere on the machine.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

HOME = "home"
_CHUNK = 1024 * 1024


@dataclass
class HomeFile:
    path: str  # relative to the home directory, with '/'
    size: int
    sha256: str
    mode: int  # permission bits, put back on restore (0600 for keys)


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _left_out(path: Path, excluded: list[Path]) -> bool:
    return any(path == skip or skip in path.parents for skip in excluded)


def copy_home(home: Path, excluded: Iterable[Path], into: Path) -> list[HomeFile]:
    """Copy the home directory's files, but those under ``excluded``, into ``into/home``
    with their permission bits; returns what was copied."""
    if not home.is_dir():
        return []
    home = home.resolve()
    skip = [path.resolve() for path in excluded]
    copied: list[HomeFile] = []
    for directory, subdirectories, files in os.walk(home, followlinks=False):
        here = Path(directory)
        subdirectories[:] = sorted(d for d in subdirectories if not _left_out(here / d, skip))
        for name in sorted(files):
            source = here / name
            info = source.lstat()
            if not stat.S_ISREG(info.st_mode) or _left_out(source, skip):
                continue
            relative = source.relative_to(home).as_posix()
            target = into / HOME / relative
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with source.open("rb") as reader, _private_writer(target) as writer:
                while chunk := reader.read(_CHUNK):
                    writer.write(chunk)
            mode = stat.S_IMODE(info.st_mode)
            os.chmod(target, mode)
            copied.append(HomeFile(relative, info.st_size, _digest(target), mode))
    return copied


def _private_writer(path: Path) -> io.BufferedWriter:
    # Created 0600 from the start: a key is never readable by others, even for a moment.
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")


def check_home(directory: Path, files: Iterable[HomeFile]) -> list[str]:
    """The problems of the backed-up home files: missing, or changed since the backup."""
    problems = []
    for entry in files:
        path = directory / HOME / entry.path
        if not path.is_file():
            problems.append(f"home file {entry.path} is missing from the backup")
        elif _digest(path) != entry.sha256:
            problems.append(f"home file {entry.path} was changed")
    return problems


def escapes_home(entry: HomeFile) -> bool:
    """Whether a manifest's entry would be written outside the home directory."""
    relative = Path(entry.path)
    return relative.is_absolute() or ".." in relative.parts or not relative.parts


def restore_home(directory: Path, files: Iterable[HomeFile], home: Path) -> int:
    """Put the backed-up home files back under ``home`` with their permission bits, each
    replaced atomically; returns how many."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    restored = 0
    for entry in files:
        relative = Path(entry.path)  # inside the home directory: checked by Manifest.read
        target = home / relative
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.restoring")
        with (directory / HOME / relative).open("rb") as reader, _private_writer(partial) as out:
            while chunk := reader.read(_CHUNK):
                out.write(chunk)
        os.chmod(partial, entry.mode)
        os.replace(partial, target)
        restored += 1
    return restored
