"""The training reference that drift is measured against (ADR 0032), stored with a model
version at registration: per numeric feature, the training rows' 10 quantile bins (9 inner
edges) and the share of rows in each; per categorical feature, the shares of its 20 most
frequent values and of all the others together."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

BINS = 10
TOP_CATEGORIES = 20
MAX_FEATURES = 2_000

Share = Annotated[float, Field(ge=0, le=1)]


class NumericReference(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["numeric"] = "numeric"
    # Ascending inner edges: bin i holds values v with edges[i-1] < v <= edges[i].
    edges: list[float] = Field(max_length=BINS - 1)
    fractions: list[Share] = Field(min_length=1, max_length=BINS)

    @model_validator(mode="after")
    def _consistent(self) -> NumericReference:
        if len(self.fractions) != len(self.edges) + 1:
            raise ValueError("a numeric reference has one fraction more than it has edges")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("edges must be strictly ascending")
        return self


class CategoricalReference(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["categorical"] = "categorical"
    fractions: dict[Annotated[str, Field(max_length=256)], Share] = Field(max_length=TOP_CATEGORIES)
    other: Share = 0.0


FeatureReference = Annotated[NumericReference | CategoricalReference, Field(discriminator="kind")]


class DriftReference(BaseModel):
    """What the training rows looked like, feature by feature (by signature input name)."""

    model_config = ConfigDict(extra="forbid")
    rows: int = Field(ge=0, description="Training rows the reference was computed from")
    features: dict[Annotated[str, Field(max_length=256)], FeatureReference] = Field(
        max_length=MAX_FEATURES
    )
