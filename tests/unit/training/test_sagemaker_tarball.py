"""A training job's ``model.tar.gz`` is written by code the platform does not control: only one
plain model file comes out of it, and anything that could escape the directory or smuggle a
pickle is refused."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from armillary.training import sagemaker
from armillary.training.sagemaker import UnsafeModelArtifact, extract_model


def _skops_bytes() -> bytes:
    # A skops file is a zip archive; its content does not matter to the extraction.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("schema.json", "{}")
    return buffer.getvalue()


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _special(name: str, kind: bytes, target: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, b""


def _tarball(tmp_path: Path, *members: tuple[tarfile.TarInfo, bytes]) -> Path:
    path = tmp_path / "model.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def _refused(tmp_path: Path, match: str, *members: tuple[tarfile.TarInfo, bytes]) -> None:
    destination = tmp_path / "out"
    with pytest.raises(UnsafeModelArtifact, match=match):
        extract_model(_tarball(tmp_path, *members), destination)
    leftovers = [p for p in destination.rglob("*")] if destination.exists() else []
    assert leftovers == []
    assert not (tmp_path / "escaped").exists()


def test_a_skops_model_is_extracted_and_nothing_else(tmp_path: Path) -> None:
    model = _skops_bytes()
    tarball = _tarball(
        tmp_path,
        _special(".", tarfile.DIRTYPE),
        _file("./model.skops", model),
        _file("./metrics.json", b"{}"),
    )
    path, model_format = extract_model(tarball, tmp_path / "out")
    assert (path, model_format) == (tmp_path / "out" / "model.skops", "skops")
    assert path.read_bytes() == model
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model.skops"]
    assert path.stat().st_mode & 0o022 == 0  # the data filter's modes, not the tarball's


def test_an_onnx_model_is_accepted(tmp_path: Path) -> None:
    path, model_format = extract_model(
        _tarball(tmp_path, _file("model.onnx", b"\x08\x07")), tmp_path / "out"
    )
    assert model_format == "onnx"
    assert path.read_bytes() == b"\x08\x07"


@pytest.mark.parametrize(
    ("member", "match"),
    [
        (_special("model.skops", tarfile.SYMTYPE, "/etc/passwd"), "link or device"),
        (_special("model.skops", tarfile.LNKTYPE, "../escaped"), "link or device"),
        (_special("model.skops", tarfile.FIFOTYPE), "link or device"),
        (_special("model.skops", tarfile.CHRTYPE), "link or device"),
        (_file("../escaped"), "unsafe path"),
        (_file("./../escaped"), "unsafe path"),
        (_file("/tmp/escaped"), "unsafe path"),
        (_file("sub/model.skops", _skops_bytes()), "nested path"),
        (_file("..\\escaped"), "unsafe path"),
    ],
)
def test_links_devices_and_escaping_paths_are_refused(
    tmp_path: Path, member: tuple[tarfile.TarInfo, bytes], match: str
) -> None:
    _refused(tmp_path, match, _file("model.onnx", b"m"), member)


@pytest.mark.parametrize("name", ["model.pkl", "model.joblib", "model.pickle", "MODEL.PKL"])
def test_a_pickle_is_refused_even_beside_a_skops_model(tmp_path: Path, name: str) -> None:
    _refused(tmp_path, "pickle", _file(name), _file("model.skops", _skops_bytes()))


def test_a_pickle_only_tarball_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, "pickle", _file("model.joblib"))


@pytest.mark.parametrize(
    "members",
    [
        [],
        [_file("weights.bin")],
        [_file("model.skops", _skops_bytes()), _file("model.onnx")],
        [_special("model.skops", tarfile.DIRTYPE)],
    ],
)
def test_exactly_one_model_file_is_required(
    tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes]]
) -> None:
    _refused(tmp_path, "exactly one of model.skops and model.onnx", *members)


def test_too_many_members_are_refused(tmp_path: Path) -> None:
    members = [_file(f"log{i}.txt") for i in range(sagemaker.MAX_MEMBERS)]
    _refused(tmp_path, "more than", _file("model.onnx"), *members)


def test_a_member_larger_than_the_cap_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sagemaker, "MAX_MODEL_BYTES", 10)
    _refused(tmp_path, "larger than", _file("model.onnx", b"x" * 11))


def test_a_skops_model_that_is_not_a_skops_file_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, "not a skops file", _file("model.skops", b"\x80\x04K\x01."))


def test_something_that_is_not_a_tarball_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.tar.gz"
    path.write_bytes(b"PK\x03\x04 not a tarball")
    with pytest.raises(UnsafeModelArtifact, match="cannot be read"):
        extract_model(path, tmp_path / "out")
