"""F8: the work root. Another user's pre-created directory (the old predictable
``/tmp/armillary-work-…``) or a link planted in its place is refused, before the worker
writes, chmods or extracts anything there; the default lives under ARMILLARY_HOME."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from armillary.engine import default_work_root
from armillary.kit.settings import Settings
from armillary.workflows.execution import workroot
from armillary.workflows.execution.local import LocalExecutor

OTHER_UID = 4321


@pytest.mark.skipif(os.geteuid() != 0, reason="making another user's directory needs root")
async def test_a_work_root_pre_created_by_another_user_is_refused(tmp_path: Path) -> None:
    planted = tmp_path / "armillary-work-0123456789ab"
    planted.mkdir()
    planted.chmod(0o777)
    os.chown(planted, OTHER_UID, OTHER_UID)
    executor = LocalExecutor(planted, prestarted=0)
    with pytest.raises(workroot.UnsafeWorkRoot, match="belongs to another user"):
        await executor.start()
    assert oct(planted.stat().st_mode & 0o777) == oct(0o777)  # not even chmodded
    assert list(planted.iterdir()) == []


async def test_a_work_root_that_is_a_link_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = tmp_path / "work"
    link.symlink_to(target)
    with pytest.raises(workroot.UnsafeWorkRoot, match="link is refused"):
        await LocalExecutor(link, prestarted=0).start()
    assert list(target.iterdir()) == []


def test_the_own_work_root_is_made_private(tmp_path: Path) -> None:
    root = tmp_path / "work"
    root.mkdir(mode=0o755)
    workroot.ensure_private(root)
    assert root.stat().st_mode & 0o777 == 0o700
    fresh = tmp_path / "fresh"
    workroot.ensure_private(fresh)
    assert fresh.stat().st_mode & 0o777 == 0o700


def test_the_default_work_root_is_under_the_home(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    assert default_work_root(settings) == tmp_path / "home" / "work"
