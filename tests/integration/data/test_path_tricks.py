"""Names that look like paths (traversal, encoded traversal, Windows paths, NUL and control
characters) are refused with 400 wherever a user can supply them, and no object is ever
written outside the project's prefix. On both storage backends."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.conftest import auth
from tests.integration.data.support import Platform, Scene, assert_problem, make_scene, sha256

GOOD_CSV = b"a,b\n1,2\n3,4\n"

TRICKS = [
    "../x",
    "../../../../etc/passwd",
    "..",
    "%2e%2e%2fx",
    "%2E%2E%2Fx",
    "..%2fx",
    "%252e%252e%252fx",
    "%25252e%25252e%25252fx",
    "..\\x",
    "..\\..\\windows\\x",
    "/etc/passwd",
    "/x",
    "C:\\x",
    "C:x",
    "\\\\server\\share\\x",
    "x/y",
    "a\x00b",
    "x\x00/../../y",
    "a\nb",
    "a\rb",
    "a\tb",
    "a\x1bb",
    "a\x7fb",
    "%00x",
]


def _multipart(filename: str, content: bytes) -> tuple[bytes, str]:
    """A body with the filename exactly as given (only quotes and backslashes escaped), so no
    client library rewrites it on the way."""
    boundary = "path-tricks-boundary"
    quoted = filename.replace("\\", "\\\\").replace('"', '\\"')
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{quoted}"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()
    body = head + content + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _files_under(root: Path) -> set[str]:
    return {
        str(Path(directory, name).relative_to(root))
        for directory, _dirs, names in os.walk(root)
        for name in names
    }


def _assert_only_under_project(platform: Platform, scene: Scene) -> None:
    prefix = f"projects/{scene.project['id']}/"
    keys = platform.all_keys()
    assert keys, "the good upload should have stored one object"
    assert all(k.startswith(prefix) for k in keys), keys


async def test_dataset_names_that_look_like_paths_are_refused(platform: Platform) -> None:
    scene = await make_scene(platform)
    for name in [*TRICKS, "x.csv/..", "-x", ".hidden"]:
        response = await platform.client.post(
            scene.base, json={"name": name}, headers=auth(scene.token)
        )
        assert_problem(response, 400, repr(name))
    listed = (await platform.client.get(scene.base, headers=auth(scene.token))).json()
    assert [d["name"] for d in listed["items"]] == [scene.dataset["name"]]


async def test_upload_filenames_that_look_like_paths_are_refused(
    platform: Platform, tmp_path: Path
) -> None:
    scene = await make_scene(platform)
    files_before = _files_under(tmp_path)
    before = await platform.snapshot()
    for filename in [*TRICKS, "C:\\dir\\data.csv", "\\\\server\\share\\data.csv"]:
        body, content_type = _multipart(filename + ".csv", GOOD_CSV)
        headers = {**auth(scene.token), "Content-Type": content_type}
        response = await platform.client.post(scene.versions, content=body, headers=headers)
        problem = assert_problem(response, 400, repr(filename))
        # A CR or LF inside a header may instead break the multipart framing: still a 400.
        expected = (
            ("file name", "malformed") if "\r" in filename or "\n" in filename else ("file name",)
        )
        assert any(word in problem["detail"] for word in expected), (filename, problem)
        assert await platform.snapshot() == before, repr(filename)
    assert _files_under(tmp_path) == files_before

    # A plain name is accepted and kept; the object goes under the project whatever the name.
    body, content_type = _multipart("plain name (1).csv", GOOD_CSV)
    headers = {**auth(scene.token), "Content-Type": content_type}
    good = await platform.client.post(scene.versions, content=body, headers=headers)
    assert good.status_code == 201, good.text
    assert good.json()["original_filename"] == "plain name (1).csv"
    good_key = await scene.key_for(sha256(GOOD_CSV), "csv")
    assert platform.all_keys() == [good_key]
    _assert_only_under_project(platform, scene)
    new_files = _files_under(tmp_path) - files_before
    if platform.backend == "local":
        assert new_files == {f"home/objects/{good_key}"}
    else:
        assert new_files == set()


# Dataset references in the URL path, written percent-encoded as a client would send them.
PATH_SEGMENTS = [
    "%2e%2e",
    "..%5cx",
    "%2e%2e%5c%2e%2e%5cx",
    "%252e%252e%252fx",
    "%25252e%25252e%25252fx",
    "C:%5cx",
    "a%00b",
    "a%0ab",
    "a%1bb",
    "%5c%5cserver%5cx",
]


@pytest.mark.parametrize("method", ["GET dataset", "GET versions", "POST version"])
async def test_dataset_path_segments_that_look_like_paths_are_refused(
    platform: Platform, method: str
) -> None:
    scene = await make_scene(platform)
    before = await platform.snapshot()
    for segment in PATH_SEGMENTS:
        url = f"{scene.base}/{segment}"
        if method == "GET dataset":
            response = await platform.client.get(url, headers=auth(scene.token))
        elif method == "GET versions":
            response = await platform.client.get(f"{url}/versions", headers=auth(scene.token))
        else:
            response = await platform.client.post(
                f"{url}/versions",
                files={"file": ("data.csv", GOOD_CSV, "text/csv")},
                headers=auth(scene.token),
            )
        assert_problem(response, 400, f"{method} {segment}")
    # Encoded slashes split the segment: the route does not match, or the name is refused.
    for segment in ["..%2f..%2fx", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "%2fetc%2fpasswd"]:
        response = await platform.client.post(
            f"{scene.base}/{segment}/versions",
            files={"file": ("data.csv", GOOD_CSV, "text/csv")},
            headers=auth(scene.token),
        )
        assert response.status_code in (400, 404, 405), (segment, response.text)
    assert await platform.snapshot() == before
