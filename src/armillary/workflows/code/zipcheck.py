"""Safety checks on code bundles: pure functions, used on upload and again before extraction.

A bundle is one Python file (``kind="py"``) or a zip archive (``kind="zip"``). A zip is
refused, with a message naming the offending entry, when an entry could escape the directory
it is extracted into (absolute path, drive letter, backslash, ``..``), is not a regular file or
directory (symlink, device, FIFO), is encrypted or uses an unknown compression method, or
appears twice; and when the archive as a whole is a likely zip bomb (too many entries, too
many uncompressed bytes, too high a compression ratio). :func:`extract_bundle` makes the same
checks, then extracts while counting the bytes actually written, so an archive that lies about
its sizes is stopped as well.
"""

from __future__ import annotations

import io
import lzma
import os
import re
import shutil
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final, Literal

MIB: Final = 1024 * 1024
PY_ENTRYPOINT: Final = "main.py"

Kind = Literal["py", "zip"]

_DRIVE: Final = re.compile(r"^[A-Za-z]:")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
_METHODS: Final = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)
# What zipfile and its decompressors raise on damaged input.
_CORRUPT: Final = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    NotImplementedError,  # an unsupported compression method, not unfinished code
    ValueError,
    EOFError,
    OSError,
    struct.error,
    zlib.error,
    lzma.LZMAError,
)
_MAX_NAME: Final = 1024
_MAX_COMPONENT: Final = 255
_COPY_CHUNK: Final = 1 * MIB


@dataclass(frozen=True, slots=True)
class Limits:
    """What a bundle may hold. The ratio applies to entries (and archives) that expand to more
    than ``ratio_min_bytes``: a small file of blanks compresses well and is harmless."""

    max_entries: int = 10_000
    max_uncompressed_bytes: int = 200 * MIB
    max_ratio: float = 100.0
    ratio_min_bytes: int = 1 * MIB


DEFAULT_LIMITS: Final = Limits()


class UnsafeBundle(ValueError):
    """A bundle that is refused; ``entry`` names the archive member at fault, if any, and
    ``line`` the line of a Python syntax error."""

    def __init__(self, message: str, *, entry: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.entry = entry
        self.line = line


@dataclass(frozen=True, slots=True)
class BundleSummary:
    kind: Kind
    entries: int  # regular files (a ``py`` bundle is one)
    uncompressed_bytes: int


def check_bundle(data: bytes, kind: str, limits: Limits = DEFAULT_LIMITS) -> BundleSummary:
    """Check a bundle of either kind; raise :class:`UnsafeBundle` if it is refused."""
    if kind == "py":
        check_python(data)
        return BundleSummary("py", 1, len(data))
    if kind == "zip":
        return check_zip(data, limits)
    raise UnsafeBundle(f"unknown bundle kind {kind!r} (expected py or zip)")


def check_python(data: bytes, filename: str = PY_ENTRYPOINT) -> str:
    """The source of a single-file bundle: UTF-8 that compiles. Returns the decoded text."""
    try:
        source = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnsafeBundle(
            f"the Python file is not valid UTF-8 (byte {exc.start})", entry=filename
        ) from None
    source = source.removeprefix("\ufeff")
    if "\x00" in source:
        raise UnsafeBundle("the Python file contains NUL bytes", entry=filename)
    try:
        # Compiling only parses and builds bytecode: nothing in the source runs.
        compile(source, filename, "exec", dont_inherit=True)
    except SyntaxError as exc:
        line = exc.lineno
        where = f"line {line}" if line is not None else "unknown line"
        raise UnsafeBundle(
            f"syntax error in {filename} at {where}: {exc.msg}", entry=filename, line=line
        ) from None
    except (ValueError, RecursionError, MemoryError):
        # Absurdly nested expressions, or source the compiler refuses outright.
        raise UnsafeBundle("the Python file cannot be compiled", entry=filename) from None
    return source


def check_entry_name(name: str) -> list[str]:
    """The path components of a safe archive member name (directories end with ``/``)."""
    if not name:
        raise UnsafeBundle("an entry has an empty name", entry=name)
    if len(name) > _MAX_NAME:
        raise UnsafeBundle(f"entry name is longer than {_MAX_NAME} characters", entry=name)
    if _CONTROL.search(name):
        raise UnsafeBundle("entry name contains control characters", entry=name)
    if "\\" in name:
        raise UnsafeBundle("entry name contains a backslash", entry=name)
    if name.startswith("/"):
        raise UnsafeBundle("entry has an absolute path", entry=name)
    if _DRIVE.match(name):
        raise UnsafeBundle("entry path starts with a drive letter", entry=name)
    parts = name.removesuffix("/").split("/")
    for part in parts:
        if part == "..":
            raise UnsafeBundle("entry path contains '..'", entry=name)
        if part in ("", "."):
            raise UnsafeBundle("entry path has an empty or '.' component", entry=name)
        if len(part) > _MAX_COMPONENT:
            raise UnsafeBundle(
                f"entry path has a component longer than {_MAX_COMPONENT} characters", entry=name
            )
    return parts


def _is_dir(info: zipfile.ZipInfo) -> bool:
    return info.filename.endswith("/")


def _check_entry_type(info: zipfile.ZipInfo) -> None:
    mode = info.external_attr >> 16
    if info.flag_bits & 0x1:
        raise UnsafeBundle("entry is encrypted", entry=info.filename)
    if info.compress_type not in _METHODS:
        raise UnsafeBundle(
            f"entry uses an unsupported compression method ({info.compress_type})",
            entry=info.filename,
        )
    if mode == 0:
        return  # no Unix mode recorded (e.g. made on Windows): a file or a directory
    kind = stat.S_IFMT(mode)
    if stat.S_ISLNK(mode):
        raise UnsafeBundle("entry is a symbolic link", entry=info.filename)
    if kind == stat.S_IFDIR and _is_dir(info):
        return
    if kind in (0, stat.S_IFREG) and not _is_dir(info):
        return
    raise UnsafeBundle("entry is not a regular file or directory", entry=info.filename)


def _check_ratio(compressed: int, uncompressed: int, limits: Limits, entry: str | None) -> None:
    if uncompressed <= limits.ratio_min_bytes:
        return
    if compressed <= 0 or uncompressed / compressed > limits.max_ratio:
        where = "entry" if entry else "archive"
        raise UnsafeBundle(
            f"{where} compression ratio is above {limits.max_ratio:g}:1 (possible zip bomb)",
            entry=entry,
        )


def _open_zip(data: bytes) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except _CORRUPT:
        raise UnsafeBundle("not a valid zip archive") from None


def _checked_members(archive: zipfile.ZipFile, limits: Limits) -> tuple[list[zipfile.ZipInfo], int]:
    infos = archive.infolist()
    if len(infos) > limits.max_entries:
        raise UnsafeBundle(f"the archive has more than {limits.max_entries} entries")
    seen: dict[str, bool] = {}  # path -> is a directory
    total = compressed_total = files = 0
    for info in infos:
        # orig_filename is the name as stored; filename may have been cut at a NUL.
        if info.orig_filename != info.filename:
            raise UnsafeBundle("entry name contains control characters", entry=info.filename)
        parts = check_entry_name(info.filename)
        _check_entry_type(info)
        path = "/".join(parts)
        if path in seen:
            raise UnsafeBundle("duplicate entry", entry=info.filename)
        is_dir = _is_dir(info)
        seen[path] = is_dir
        if is_dir:
            continue
        files += 1
        total += info.file_size
        compressed_total += info.compress_size
        if total > limits.max_uncompressed_bytes:
            raise UnsafeBundle(
                f"the archive expands to more than {limits.max_uncompressed_bytes} bytes",
                entry=info.filename,
            )
        _check_ratio(info.compress_size, info.file_size, limits, info.filename)
    _check_ratio(compressed_total, total, limits, None)
    # A name used both as a file and as a parent directory cannot be extracted.
    for path in seen:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if seen.get(parent) is False:
                raise UnsafeBundle(f"entry is inside {parent!r}, which is a file", entry=path)
    return infos, files


def check_zip(data: bytes, limits: Limits = DEFAULT_LIMITS) -> BundleSummary:
    """Check a zip bundle without extracting it; raise :class:`UnsafeBundle` if refused."""
    with _open_zip(data) as archive:
        infos, files = _checked_members(archive, limits)
        total = sum(i.file_size for i in infos if not _is_dir(i))
    if files == 0:
        raise UnsafeBundle("the archive holds no files")
    return BundleSummary("zip", files, total)


def _prepare_dest(dest: Path) -> Path:
    if dest.is_symlink():
        raise UnsafeBundle("the destination is a symbolic link")
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise UnsafeBundle("the destination directory is not empty")
    return dest.resolve(strict=True)


def _write_new(target: Path, chunks: IO[bytes] | None, data: bytes | None) -> int:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(target, flags, 0o644)
    with os.fdopen(fd, "wb") as out:
        if data is not None:
            out.write(data)
            return len(data)
        assert chunks is not None  # noqa: S101 - one of the two is given
        written = 0
        while block := chunks.read(_COPY_CHUNK):
            written += len(block)
            out.write(block)
        return written


def extract_bundle(data: bytes, kind: str, dest: Path, *, limits: Limits = DEFAULT_LIMITS) -> Path:
    """Check a bundle again and extract it into ``dest`` (created; must be empty), returning
    the resolved directory to run from. A ``py`` bundle becomes ``dest/main.py``.

    Every path is re-checked against ``dest`` after resolution, files are created exclusively
    without following links, and the bytes actually written are counted against the limits.
    On failure the partial extraction is removed.
    """
    check_bundle(data, kind, limits)
    root = _prepare_dest(dest)
    try:
        if kind == "py":
            _write_new(root / PY_ENTRYPOINT, None, data)
            return root
        with _open_zip(data) as archive:
            infos, _files = _checked_members(archive, limits)
            written_total = 0
            for info in infos:
                target = root.joinpath(*check_entry_name(info.filename))
                if not target.resolve().is_relative_to(root):
                    raise UnsafeBundle("entry escapes the destination", entry=info.filename)
                if _is_dir(info):
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.parent.resolve().is_relative_to(root):
                    raise UnsafeBundle("entry escapes the destination", entry=info.filename)
                if target.exists() or target.is_symlink():
                    # Two names the file system does not tell apart (e.g. by case).
                    raise UnsafeBundle("duplicate entry", entry=info.filename)
                try:
                    with archive.open(info) as member:
                        written = _write_new(target, member, None)
                except _CORRUPT as exc:
                    if isinstance(exc, OSError) and not isinstance(exc, FileExistsError):
                        raise  # the disk's problem, not the archive's
                    raise UnsafeBundle("entry is corrupt", entry=info.filename) from None
                if written != info.file_size:
                    raise UnsafeBundle("entry size does not match the archive", entry=info.filename)
                written_total += written
                if written_total > limits.max_uncompressed_bytes:
                    raise UnsafeBundle(
                        f"the archive expands to more than {limits.max_uncompressed_bytes} bytes",
                        entry=info.filename,
                    )
        return root
    except BaseException:
        for child in list(root.iterdir()):
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
        raise
