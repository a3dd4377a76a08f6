"""Code bundle safety: every way a zip could escape its directory or blow up is refused, and
extraction of a good bundle puts its files under the destination only."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest

from armillary.workflows.code.zipcheck import (
    Limits,
    UnsafeBundle,
    check_bundle,
    check_python,
    check_zip,
    extract_bundle,
)


def make_zip(
    entries: list[tuple[str | zipfile.ZipInfo, bytes]],
    *,
    compression: int = zipfile.ZIP_DEFLATED,
) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def refused(data: bytes, *, limits: Limits | None = None) -> UnsafeBundle:
    with pytest.raises(UnsafeBundle) as caught:
        check_zip(data, limits or Limits())
    return caught.value


GOOD = make_zip(
    [
        ("pkg/", b""),
        ("pkg/__init__.py", b""),
        ("pkg/steps.py", b"def main(**kw):\n    return {'ok': True}\n"),
        ("main.py", b"from pkg.steps import main\n"),
        ("data/table.csv", b"a,b\n1,2\n"),
    ]
)


def test_a_good_zip_is_summarised() -> None:
    summary = check_zip(GOOD)
    assert summary.kind == "zip"
    assert summary.entries == 4  # files; the directory entry is not counted
    assert summary.uncompressed_bytes == 40 + 27 + 8


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../evil.py", "'..'"),
        ("pkg/../../evil.py", "'..'"),
        ("/etc/cron.d/evil", "absolute"),
        ("C:/Windows/evil.py", "drive letter"),
        ("c:evil.py", "drive letter"),
        ("pkg\\..\\evil.py", "backslash"),
        ("pkg//evil.py", "empty"),
        ("./evil.py", "'.'"),
        ("pkg/\x01evil.py", "control"),
    ],
)
def test_paths_that_could_escape_are_refused(name: str, reason: str) -> None:
    error = refused(make_zip([("ok.py", b""), (name, b"x")]))
    assert reason in error.message
    assert error.entry == name


def test_a_symlink_entry_is_refused() -> None:
    link = zipfile.ZipInfo("pkg/link.py")
    link.external_attr = (0o120777 << 16) | 0
    error = refused(make_zip([("main.py", b""), (link, b"/etc/passwd")]))
    assert "symbolic link" in error.message
    assert error.entry == "pkg/link.py"


@pytest.mark.parametrize("mode", [stat.S_IFIFO | 0o644, stat.S_IFCHR | 0o644, stat.S_IFBLK])
def test_other_special_files_are_refused(mode: int) -> None:
    special = zipfile.ZipInfo("dev")
    special.external_attr = mode << 16
    error = refused(make_zip([(special, b"")]))
    assert "not a regular file" in error.message


def test_a_file_marked_as_a_directory_is_refused() -> None:
    odd = zipfile.ZipInfo("pkg")
    odd.external_attr = (stat.S_IFDIR | 0o755) << 16
    assert "not a regular file" in refused(make_zip([(odd, b"x")])).message


def test_regular_modes_and_windows_zips_pass() -> None:
    unix = zipfile.ZipInfo("a.py")
    unix.external_attr = (stat.S_IFREG | 0o755) << 16
    windows = zipfile.ZipInfo("b.py")
    windows.create_system = 0
    windows.external_attr = 0x20  # the MS-DOS archive bit only
    assert check_zip(make_zip([(unix, b""), (windows, b"")])).entries == 2


def test_duplicates_and_file_directory_clashes_are_refused() -> None:
    with pytest.warns(UserWarning, match="Duplicate name"):
        twice = make_zip([("a.py", b"1"), ("a.py", b"2")])
    assert "duplicate" in refused(twice).message
    assert "duplicate" in refused(make_zip([("a", b"1"), ("a/", b"")])).message
    clash = refused(make_zip([("a", b"file"), ("a/b.py", b"")]))
    assert "which is a file" in clash.message
    assert clash.entry == "a/b.py"


def test_an_encrypted_entry_is_refused() -> None:
    data = bytearray(make_zip([("secret.py", b"x = 1\n")], compression=zipfile.ZIP_STORED))
    # Set the "encrypted" flag in the local header and the central directory.
    local = data.index(b"PK\x03\x04")
    central = data.index(b"PK\x01\x02")
    data[local + 6] |= 0x1
    data[central + 8] |= 0x1
    error = refused(bytes(data))
    assert "encrypted" in error.message
    assert error.entry == "secret.py"


def test_zip_bombs_are_refused() -> None:
    bomb = make_zip([("zeros.bin", b"\0" * (8 * 1024 * 1024))])
    assert len(bomb) < 100_000
    error = refused(bomb)
    assert "compression ratio" in error.message
    assert error.entry == "zeros.bin"
    # Spread over many entries, each under the per-entry threshold: the archive's ratio.
    spread = make_zip([(f"z{i}.bin", b"\0" * 900_000) for i in range(3)])
    assert "archive compression ratio" in refused(spread).message
    # Too many bytes in total, whatever the ratio.
    big = make_zip([("a.bin", b"x" * 5000), ("b.bin", b"y" * 5000)], compression=0)
    small = Limits(max_uncompressed_bytes=8000)
    assert "expands to more than 8000" in refused(big, limits=small).message


def test_a_small_well_compressing_file_is_fine() -> None:
    # 64 KiB of blanks compresses far beyond 100:1 but cannot hurt anyone.
    assert check_zip(make_zip([("blank.py", b" " * 65536)])).entries == 1


def test_too_many_entries_and_invalid_archives() -> None:
    many = make_zip([(f"m{i}.py", b"") for i in range(12)])
    assert "more than 10 entries" in refused(many, limits=Limits(max_entries=10)).message
    assert "not a valid zip" in refused(b"PK\x03\x04 definitely not a zip").message
    assert "not a valid zip" in refused(b"").message
    assert "no files" in refused(make_zip([("empty/", b"")])).message


def test_python_files_must_be_utf8_and_compile() -> None:
    assert check_python("print('héllo')\n".encode()) == "print('héllo')\n"
    assert check_python(b"\xef\xbb\xbfx = 1\n") == "x = 1\n"  # a BOM is tolerated
    with pytest.raises(UnsafeBundle, match=r"syntax error in main\.py at line 3") as caught:
        check_python(b"x = 1\n\ndef broken(:\n    pass\n")
    assert caught.value.line == 3
    with pytest.raises(UnsafeBundle, match="not valid UTF-8"):
        check_python(b"x = '\xff'\n")
    with pytest.raises(UnsafeBundle, match="NUL"):
        check_python(b"x = 1\x00\n")
    with pytest.raises(UnsafeBundle, match="unknown bundle kind"):
        check_bundle(b"x = 1\n", "tar")


def test_compiling_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    check_python(f"open({str(marker)!r}, 'w').write('x')\n".encode())
    assert not marker.exists()


def test_extract_round_trip_stays_under_dest(tmp_path: Path) -> None:
    dest = tmp_path / "work" / "bundle"
    root = extract_bundle(GOOD, "zip", dest)
    assert root == dest.resolve()
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert files == ["data/table.csv", "main.py", "pkg/__init__.py", "pkg/steps.py"]
    assert (root / "pkg" / "steps.py").read_bytes().startswith(b"def main")
    # Nothing was written beside the destination.
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["bundle"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]


def test_extract_a_python_file_as_main(tmp_path: Path) -> None:
    root = extract_bundle(b"def main():\n    return {}\n", "py", tmp_path / "b")
    assert [p.name for p in root.iterdir()] == ["main.py"]
    assert (root / "main.py").read_text() == "def main():\n    return {}\n"


def test_extract_rechecks_and_leaves_nothing(tmp_path: Path) -> None:
    evil = make_zip([("ok.py", b"x"), ("../evil.py", b"x")])
    with pytest.raises(UnsafeBundle, match=r"'\.\.'"):
        extract_bundle(evil, "zip", tmp_path / "dest")
    assert not (tmp_path / "evil.py").exists()
    assert not (tmp_path / "dest").exists()  # refused before anything was created
    with pytest.raises(UnsafeBundle, match="syntax error"):
        extract_bundle(b"def (:\n", "py", tmp_path / "py")


def test_extract_refuses_a_used_or_linked_destination(tmp_path: Path) -> None:
    used = tmp_path / "used"
    used.mkdir()
    (used / "old.py").write_text("")
    with pytest.raises(UnsafeBundle, match="not empty"):
        extract_bundle(GOOD, "zip", used)
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(UnsafeBundle, match="symbolic link"):
        extract_bundle(GOOD, "zip", link)
    assert list(target.iterdir()) == []


def test_extract_stops_an_archive_that_lies_about_sizes(tmp_path: Path) -> None:
    data = bytearray(make_zip([("a.py", b"x" * 1000)], compression=zipfile.ZIP_STORED))
    # Corrupt the stored bytes: the CRC no longer matches.
    start = data.index(b"x" * 1000)
    data[start : start + 10] = b"y" * 10
    with pytest.raises(UnsafeBundle, match="corrupt"):
        extract_bundle(bytes(data), "zip", tmp_path / "d")
    assert list((tmp_path / "d").iterdir()) == []
