"""The health page's job queue per project, from the engine's counts by project."""

from __future__ import annotations

from armillary.console.routes_admin import _queues


def test_each_listed_project_gets_its_counts_and_the_others_zeros() -> None:
    projects = [{"id": "p1", "slug": "a", "name": "A"}, {"id": "p2", "slug": "b", "name": "B"}]
    engine = {
        "jobs_by_project": [
            {
                "project_id": "p1",
                "queued": 2,
                "running": 1,
                "failed": 3,
                "total": 10,
                "oldest_queued_at": "2026-12-07T10:00:00+00:00",
            },
            {"project_id": "not-listed", "queued": 9, "total": 9},
        ]
    }
    first, second = _queues(projects, engine)
    assert first["project"]["slug"] == "a"
    assert (first["queued"], first["running"], first["failed"], first["total"]) == (2, 1, 3, 10)
    assert first["oldest_queued"] == "2026-12-07T10:00:00+00:00"
    assert (second["queued"], second["total"], second["oldest_queued"]) == (0, 0, None)
    # The workflows service did not answer: the projects are still listed.
    assert [q["total"] for q in _queues(projects, None)] == [0, 0]
