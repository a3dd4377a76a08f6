"""Every table of every service, for Alembic's autogenerate (migrations only)."""

from __future__ import annotations

import armillary.data.datasets.models
import armillary.data.holds.models
import armillary.data.quality.models
import armillary.identity.audit.models
import armillary.identity.auth.models
import armillary.identity.keys.models
import armillary.identity.projects.models
import armillary.identity.tokens.models
import armillary.identity.users.models
import armillary.kit.events
import armillary.registry.aliases.models
import armillary.registry.catalog.models
import armillary.registry.versions.models
import armillary.serving.access.models
import armillary.serving.deployments.models
import armillary.serving.predict.models
import armillary.tracking.experiments.models
import armillary.tracking.runs.models
import armillary.workflows.alerts.models
import armillary.workflows.code.models
import armillary.workflows.definitions.models
import armillary.workflows.jobs.models  # noqa: F401
from armillary.kit.db import Base

target_metadata = Base.metadata
