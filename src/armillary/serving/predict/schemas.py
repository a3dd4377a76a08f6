"""Request and response models of feedback (predict and infer bodies are read by the runtime's
decoders, which check them against the model signature)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: ``<prediction id>`` for a one-row request, or ``<prediction id>:<row>``.
PREDICTION_REF_PATTERN = r"^[0-9a-fA-F-]{32,36}(:[0-9]{1,7})?$"

Actual = str | int | float | bool
PredictionRef = Annotated[str, Field(pattern=PREDICTION_REF_PATTERN, max_length=44)]


class FeedbackItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prediction_id: PredictionRef
    actual: Actual = Field(description="The true label (classification) or value (regression)")


class FeedbackIn(BaseModel):
    """One item (``prediction_id`` and ``actual``) or many (``items``)."""

    model_config = ConfigDict(extra="forbid")
    prediction_id: PredictionRef | None = None
    actual: Actual | None = None
    items: list[FeedbackItem] | None = Field(default=None, min_length=1, max_length=10_000)

    @model_validator(mode="after")
    def _one_form(self) -> FeedbackIn:
        single = self.prediction_id is not None or self.actual is not None
        if single == (self.items is not None):
            raise ValueError("give either prediction_id and actual, or items")
        if single and (self.prediction_id is None or self.actual is None):
            raise ValueError("a single item needs both prediction_id and actual")
        return self

    def all_items(self) -> list[FeedbackItem]:
        if self.items is not None:
            return self.items
        # The validator made sure both are set in the single form.
        return [
            FeedbackItem.model_validate(
                {"prediction_id": self.prediction_id, "actual": self.actual}
            )
        ]


class FeedbackResult(BaseModel):
    prediction_id: str
    status: Literal["recorded", "not_found", "invalid"]
    detail: str | None = None


class FeedbackOut(BaseModel):
    recorded: int
    rejected: int
    results: list[FeedbackResult]


AnalysisOut = dict[str, Any]
