"""The prediction path's parts without a database or HTTP: sample keys, content types,
feedback scoring, the buffered log writer and the predictor with fake models."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError

from armillary.kit.storage import InvalidObjectKey
from armillary.serving.predict.body import is_json
from armillary.serving.predict.feedback import _score, same_label
from armillary.serving.predict.log import LogRow, PredictionLog
from armillary.serving.predict.models import PredictionRecord
from armillary.serving.predict.sampling import Sample, SampleBatches, sample_key, sampled
from armillary.serving.predict.schemas import FeedbackIn
from armillary.serving.predict.service import Batching, PredictionFailed, Predictor
from armillary.serving.predict.settings import PredictSettings
from armillary.serving.runtime import Prediction

P, D = uuid.uuid4(), uuid.uuid4()


def test_sample_key_is_built_from_ids_only() -> None:
    batch = uuid.uuid4()
    key = sample_key(P, D, date(2026, 12, 2), batch)
    assert key == f"projects/{P}/deployments/{D}/samples/2026-12-02/{batch}.jsonl"
    with pytest.raises(InvalidObjectKey):
        sample_key("../etc", D, date(2026, 12, 2), batch)  # type: ignore[arg-type]
    with pytest.raises(InvalidObjectKey):
        sample_key(P, D, datetime(2026, 12, 2, tzinfo=UTC), batch)
    with pytest.raises(InvalidObjectKey):
        sample_key(P, str(D), date(2026, 12, 2), batch)  # type: ignore[arg-type]


def test_sample_batches_group_by_deployment_and_day() -> None:
    batches = SampleBatches()
    at = datetime(2026, 12, 2, 10, tzinfo=UTC)
    for i in range(3):
        batches.add(Sample(P, D, at, {"i": i, "x": np.float64(1.5)}))
    batches.add(Sample(P, D, datetime(2026, 12, 3, tzinfo=UTC), {"i": 9}))
    objects = sorted(batches.objects())
    assert [count for _, _, count in objects] == [3, 1]
    assert objects[0][1].count(b"\n") == 3
    assert b'"x":1.5' in objects[0][1]


def test_sampling_rate() -> None:
    rng = random.Random(1)
    assert not any(sampled(0.0, rng) for _ in range(1000))
    assert all(sampled(1.0, rng) for _ in range(1000))
    hits = sum(sampled(0.25, rng) for _ in range(10_000))
    assert 2300 < hits < 2700


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("Application/JSON", True),
        ("application/vnd.api+json", True),
        ("application/octet-stream", False),
        ("application/python-pickle", False),
        ("text/plain", False),
        ("multipart/form-data; boundary=x", False),
        (None, False),
    ],
)
def test_only_json_is_read(content_type: str | None, expected: bool) -> None:
    assert is_json(content_type) is expected


def test_missing_content_type_may_be_allowed_for_v2_clients() -> None:
    assert is_json(None, missing_ok=True)
    assert not is_json("application/octet-stream", missing_ok=True)


def test_labels_compare_as_numbers_or_text() -> None:
    assert same_label(1, 1.0)
    assert same_label("yes", "YES")
    assert same_label(1, "1")
    assert not same_label(0, 1)
    assert not same_label("a", "b")
    assert _score("classification", 1, 0) == (False, None, "")
    assert _score("regression", 3.0, 1.0) == (None, 4.0, "")
    assert _score("regression", 3.0, "x")[2]
    assert _score("regression", 3.0, True)[2]


def test_feedback_takes_one_form() -> None:
    pid = str(uuid.uuid4())
    assert len(FeedbackIn(prediction_id=pid, actual=1).all_items()) == 1
    many = FeedbackIn.model_validate({"items": [{"prediction_id": f"{pid}:3", "actual": "a"}]})
    assert many.all_items()[0].prediction_id.endswith(":3")
    for bad in (
        {},
        {"prediction_id": pid},
        {"prediction_id": pid, "actual": 1, "items": [{"prediction_id": pid, "actual": 1}]},
        {"prediction_id": "../../x", "actual": 1},
        {"prediction_id": pid, "actual": 1, "extra": True},
    ):
        with pytest.raises(ValidationError):
            FeedbackIn.model_validate(bad)


# -- the log writer --------------------------------------------------------------------------


@dataclass
class FakeSession:
    calls: list[int]

    async def execute(self, _statement: Any, params: list[dict[str, Any]]) -> None:
        self.calls.append(len(params))


@dataclass
class FakeDb:
    calls: list[int] = field(default_factory=list)
    fail: bool = False

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[FakeSession]:
        if self.fail:
            raise RuntimeError("database down")
        yield FakeSession(self.calls)


def _row(**overrides: Any) -> LogRow:
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "deployment_id": D,
        "config_version": 1,
        "variant": "champion",
        "model_version": 1,
        "shadow": False,
        "parent_id": None,
        "key_hash": None,
        "rows": 1,
        "outputs": [1],
        "error": False,
        "latency_ms": 0.5,
        "created_at": datetime.now(UTC),
    }
    values.update(overrides)
    return LogRow(**values)


def test_a_log_rows_values_are_its_columns_without_copies() -> None:
    outputs = [{"label": "a", "scores": [0.25, 0.75]}]
    row = _row(outputs=outputs, key_hash="k" * 64)
    values = row.values()
    assert values == asdict(row)
    assert set(values) == {column.name for column in PredictionRecord.__table__.columns}
    assert values["outputs"] is outputs  # written as is: no deep copy per logged row


def _dropped() -> float:
    return REGISTRY.get_sample_value("armillary_prediction_log_dropped_total") or 0.0


async def test_log_writes_multi_row_batches_and_flushes_on_stop() -> None:
    db = FakeDb()
    settings = PredictSettings(log_flush_ms=10_000, log_batch_rows=4, log_queue_rows=100)
    writer = PredictionLog(db, settings)  # type: ignore[arg-type]
    writer.start()
    for _ in range(10):
        writer.record(_row())
    await asyncio.sleep(0.05)  # the 4th row woke the writer well before the interval
    assert sum(db.calls) >= 4
    assert max(db.calls) <= 4
    await writer.stop()
    assert sum(db.calls) == 10
    assert writer.pending == 0


async def test_log_writes_on_its_interval() -> None:
    db = FakeDb()
    writer = PredictionLog(db, PredictSettings(log_flush_ms=20, log_batch_rows=500))  # type: ignore[arg-type]
    writer.start()
    writer.record(_row())
    await asyncio.sleep(0.15)
    assert db.calls == [1]
    await writer.stop()


async def test_a_full_log_drops_and_counts_instead_of_blocking() -> None:
    db = FakeDb()
    writer = PredictionLog(db, PredictSettings(log_queue_rows=3, log_batch_rows=500))  # type: ignore[arg-type]
    before = _dropped()
    for _ in range(5):
        writer.record(_row())
    assert writer.pending == 3
    assert _dropped() - before == 2
    db.fail = True
    await writer.flush()  # a failed write is counted, never raised into a request
    assert _dropped() - before == 5


# -- the predictor ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeVariant:
    name: str
    model_version: int
    shadow: bool = False
    weight: float = 1.0
    model: str = "churn"

    @property
    def model_version_id(self) -> str:
        return f"{self.name}-{self.model_version}"


@dataclass(frozen=True)
class FakeDeployment:
    variants: list[FakeVariant]
    id: uuid.UUID = D
    project_id: uuid.UUID = P
    project_slug: str = "demo"
    name: str = "churn"
    config_version: int = 1
    policy: dict[str, Any] = field(default_factory=dict)


class FakeModel:
    format = "onnx"

    def __init__(self, key: str, answer: int, fail: bool = False) -> None:
        self.key = key
        self.answer = answer
        self.fail = fail
        self.signature = None

    def predict(self, rows: np.ndarray[Any, Any]) -> Prediction:
        if self.fail:
            raise RuntimeError("boom")
        n = rows.shape[0]
        return Prediction([self.answer] * n, [{"0": 0.0, "1": 1.0}] * n)


class FakeFiles:
    async def model_file(self, variant: Any) -> Path:
        return Path("/nonexistent")

    def has_onnx(self, model_version_id: str) -> bool:
        return False


class FakePredictor(Predictor):
    def __init__(self, models: dict[str, FakeModel], *, sample_rate: float = 0.0) -> None:
        self.rows: list[LogRow] = []
        self.samples: list[Sample] = []
        outer = self

        class Log(PredictionLog):
            def record(self, row: LogRow) -> None:
                outer.rows.append(row)

            def sample(self, sample: Sample) -> None:
                outer.samples.append(sample)

        super().__init__(
            FakeFiles(),
            Log(FakeDb(), PredictSettings()),  # type: ignore[arg-type]
            Batching(max_batch_rows=8, max_wait_ms=1.0, max_models=4, sample_rate=sample_rate),
            PredictSettings(),
        )
        self.models = models

    async def model(self, variant: Any) -> Any:
        return self.models[variant.model_version_id]


CHAMPION, SHADOW = FakeVariant("champion", 1), FakeVariant("shadow", 2, shadow=True)


async def test_the_shadow_is_recorded_but_never_answers() -> None:
    predictor = FakePredictor(
        {"champion-1": FakeModel("champion-1", 1), "shadow-2": FakeModel("shadow-2", 0)}
    )
    deployment = FakeDeployment([CHAMPION, SHADOW])
    rows = np.array([[0.5], [0.7]])
    answer = await predictor.predict(
        deployment,  # type: ignore[arg-type]
        CHAMPION,  # type: ignore[arg-type]
        lambda _signature: rows,
        key="k",
        request_body={},
        shadow=SHADOW,  # type: ignore[arg-type]
    )
    await predictor.drain_shadows()
    body = answer.body()
    assert body["predictions"] == [1, 1]
    assert body["variant"] == "champion"
    assert body["model_version"] == 1
    assert body["runtime"] == "onnx"
    assert body["prediction_id"] == str(answer.prediction_id)
    primary, copy = predictor.rows
    assert primary.id == answer.prediction_id
    assert not primary.shadow
    assert primary.outputs == [1, 1]
    assert copy.shadow
    assert copy.parent_id == answer.prediction_id
    assert copy.outputs == [0, 0]
    assert primary.key_hash == copy.key_hash
    assert primary.key_hash != "k"


async def test_a_failing_shadow_changes_nothing_for_the_client() -> None:
    predictor = FakePredictor(
        {"champion-1": FakeModel("champion-1", 1), "shadow-2": FakeModel("s", 0, fail=True)}
    )
    rows = np.array([[0.5]])
    answer = await predictor.predict(
        FakeDeployment([CHAMPION, SHADOW]),  # type: ignore[arg-type]
        CHAMPION,  # type: ignore[arg-type]
        lambda _signature: rows,
        key=None,
        request_body={},
        shadow=SHADOW,  # type: ignore[arg-type]
    )
    await predictor.drain_shadows()
    assert answer.body()["predictions"] == [1]
    assert [(r.shadow, r.error) for r in predictor.rows] == [(False, False), (True, True)]


async def test_a_failing_model_is_a_500_problem_and_an_error_row() -> None:
    predictor = FakePredictor({"champion-1": FakeModel("champion-1", 1, fail=True)})
    with pytest.raises(PredictionFailed) as raised:
        await predictor.predict(
            FakeDeployment([CHAMPION]),  # type: ignore[arg-type]
            CHAMPION,  # type: ignore[arg-type]
            lambda _signature: np.array([[0.5]]),
            key=None,
            request_body={},
            shadow=None,
        )
    assert raised.value.status == 500
    assert "boom" not in raised.value.detail
    assert [(r.error, r.outputs) for r in predictor.rows] == [(True, None)]


async def test_sampled_requests_carry_request_and_response() -> None:
    predictor = FakePredictor({"champion-1": FakeModel("champion-1", 1)}, sample_rate=1.0)
    answer = await predictor.predict(
        FakeDeployment([CHAMPION]),  # type: ignore[arg-type]
        CHAMPION,  # type: ignore[arg-type]
        lambda _signature: np.array([[0.5]]),
        key=None,
        request_body={"instances": [{"x": 0.5}]},
        shadow=None,
    )
    (sample,) = predictor.samples
    assert sample.deployment_id == D
    assert sample.project_id == P
    assert sample.record["request"] == {"instances": [{"x": 0.5}]}
    assert sample.record["response"]["prediction_id"] == str(answer.prediction_id)


async def test_concurrent_single_rows_are_micro_batched() -> None:
    predictor = FakePredictor({"champion-1": FakeModel("champion-1", 1)})
    sizes: list[int] = []
    model = predictor.models["champion-1"]
    batcher = predictor._batcher(model)  # type: ignore[arg-type]
    batcher.on_batch = sizes.append
    results = await asyncio.gather(
        *(predictor.run(model, np.array([[float(i)]])) for i in range(8))  # type: ignore[arg-type]
    )
    assert all(r.outputs == [1] for r in results)
    assert sum(sizes) == 8
    assert max(sizes) > 1
