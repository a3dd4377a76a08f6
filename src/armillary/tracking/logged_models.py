"""MLflow 3's logged models: the platform keeps none yet, so a search finds none.

MLflow's client searches them whenever it lists or downloads a run's subdirectory
(``runs:/<run>/<path>`` also covers a model logged under that name); answering 404 would
fail those calls, while an empty page is true.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from .access import Reader, mlflow_router
from .wire import WireModel

router = mlflow_router("tracking")


class SearchLoggedModels(WireModel):
    experiment_ids: list[str] = Field(default_factory=list, max_length=100)


@router.post("/logged-models/search", name="tracking.logged_models.search")
async def search_logged_models(body: SearchLoggedModels, access: Reader) -> dict[str, Any]:
    return {"models": []}
