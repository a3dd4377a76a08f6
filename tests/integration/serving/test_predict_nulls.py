"""Nulls in predict input over HTTP, on /predict and the v2 infer route: a model whose signature
says nothing of missing values (an upload) gets a 422 naming the row and column; a model whose
pipeline imputes the column (its signature says so) answers."""

from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np
import skops.io
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from tests.conftest import auth
from tests.integration.serving.predict_support import (  # noqa: F401 - fixtures
    FEATURES,
    SIGNATURE,
    PredictScene,
    features,
    instances,
    predict_platform_fixture,
    predict_settings_fixture,
    pscene_fixture,
    serving_overrides_fixture,
    truth,
)
from tests.integration.serving.support import assert_problem

IMPUTING_SIGNATURE = {
    **SIGNATURE,
    "inputs": [{"name": f, "dtype": "Float64", "imputed": True} for f in FEATURES],
}


@functools.cache
def _imputing_skops() -> bytes:
    rows = features(500, 0)
    fitted = Pipeline(
        [("impute", SimpleImputer(strategy="median")), ("model", LogisticRegression())]
    ).fit(rows, truth(rows))
    return bytes(skops.io.dumps(fitted))


async def _upload_imputing(pscene: PredictScene) -> int:
    response = await pscene.client.post(
        f"{pscene.scene.models}/{pscene.scene.model}/versions/upload",
        files={"file": ("model.skops", _imputing_skops(), "application/octet-stream")},
        data={"signature": json.dumps(IMPUTING_SIGNATURE)},
        headers=auth(pscene.scene.token),
    )
    assert response.status_code == 201, response.text
    return int(response.json()["version"])


def _with_null(row: int, column: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = list(instances(features(3, 5)))
    rows[row][column] = None
    return rows


def _v2_matrix_with_null(row: int, column: int) -> dict[str, Any]:
    data = features(3, 5)
    flat: list[float | None] = [float(v) for v in data.ravel()]
    flat[row * len(FEATURES) + column] = None
    return {"inputs": [{"name": "input", "shape": [3, 4], "datatype": "FP64", "data": flat}]}


async def test_an_uploaded_model_without_imputation_refuses_nulls(pscene: PredictScene) -> None:
    await pscene.deploy([{"name": "champion", "alias": "champion", "weight": 1}])
    headers = await pscene.key()

    refused = assert_problem(
        await pscene.client.post(
            pscene.url(), json={"instances": _with_null(2, "f1")}, headers=headers
        ),
        422,
    )
    assert refused["detail"].startswith("instances[2] (column 'f1') is null")

    v2 = f"/v2/models/{pscene.scene.slug}.churn-api/infer"
    refused = assert_problem(
        await pscene.client.post(v2, json=_v2_matrix_with_null(1, 3), headers=headers), 422
    )
    assert refused["detail"].startswith("tensor 'input'[1] (column 'f3') is null")

    # The same rows without the null are answered: only the null was wrong.
    whole = await pscene.client.post(
        pscene.url(), json={"instances": instances(features(3, 5))}, headers=headers
    )
    assert whole.status_code == 200, whole.text


async def test_a_model_whose_pipeline_imputes_answers_rows_with_nulls(
    pscene: PredictScene,
) -> None:
    version = await _upload_imputing(pscene)
    await pscene.deploy([{"name": "imputing", "version": version, "weight": 1}])
    headers = await pscene.key()

    answered = await pscene.client.post(
        pscene.url(), json={"instances": _with_null(2, "f1")}, headers=headers
    )
    assert answered.status_code == 200, answered.text
    body = answered.json()
    assert body["model_version"] == version
    assert len(body["predictions"]) == 3
    assert all(p in (0, 1) for p in body["predictions"])

    v2 = f"/v2/models/{pscene.scene.slug}.churn-api/infer"
    inferred = await pscene.client.post(v2, json=_v2_matrix_with_null(1, 3), headers=headers)
    assert inferred.status_code == 200, inferred.text
    predictions = next(o for o in inferred.json()["outputs"] if o["name"] == "predictions")
    assert predictions["shape"] == [3]
    assert np.isfinite(np.asarray(predictions["data"], dtype=float)).all()
