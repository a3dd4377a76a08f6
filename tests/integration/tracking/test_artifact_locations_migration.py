"""tracking_0002 moves the first slice's artifact locations into the proxy's namespace, so
runs made before the artifact proxy reach their files too."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session
from tests.conftest import make_settings

from armillary.migrations.runner import upgrade
from armillary.tracking.experiments.models import Experiment
from armillary.tracking.runs.models import Run

pytestmark = pytest.mark.sqlite


def test_the_project_slug_leaves_the_artifact_locations(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home", database_url=None, redis_url=None)
    upgrade(settings, "tracking_0001")
    experiment_id, run_id, project_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    engine = create_engine(f"sqlite:///{tmp_path / 'home' / 'armillary.db'}")
    # Rows as the first slice wrote them (its service no longer can): by hand, once.
    with Session(engine) as session, session.begin():
        session.add(
            Experiment(
                id=experiment_id,
                project_id=project_id,
                name="old",
                artifact_location=f"mlflow-artifacts:/proj-a/{experiment_id.hex}",
                lifecycle_stage="active",
                created_by=project_id,
                creation_time=1,
                last_update_time=1,
            )
        )
        session.flush()
        # The run's columns as of tracking_0001 only (later revisions add more).
        session.execute(
            Run.__table__.insert().values(
                id=run_id,
                experiment_id=experiment_id,
                project_id=project_id,
                created_by=project_id,
                start_time=1,
                artifact_uri=f"mlflow-artifacts:/proj-a/{experiment_id.hex}/{run_id.hex}/artifacts",
            )
        )
    upgrade(settings, "tracking_0002")
    with Session(engine) as session:
        location = session.scalar(select(Experiment.artifact_location))
        uri = session.scalar(select(Run.artifact_uri))
    engine.dispose()
    assert location == f"mlflow-artifacts:/{experiment_id.hex}"
    assert uri == f"mlflow-artifacts:/{experiment_id.hex}/{run_id.hex}/artifacts"
