"""A hold of a model version on the dataset version it was trained or evaluated on."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from armillary.kit.db import Base, UTCDateTime, new_id, utcnow


class DatasetHold(Base):
    __tablename__ = "data_dataset_holds"
    __table_args__ = (
        # One hold per dataset version and model version: a redelivered event adds nothing.
        Index("uq_data_dataset_holds_version_model", "version_id", "model_version_id", unique=True),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    project_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    dataset_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("data_datasets.id", ondelete="CASCADE"), index=True
    )
    version_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("data_dataset_versions.id", ondelete="CASCADE")
    )
    # The registry's ids and names, copied from its event: no foreign key across services.
    model_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    model: Mapped[str] = mapped_column(String(128))
    model_version_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    model_version: Mapped[int] = mapped_column(Integer)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
