"""Contracts of the training task types ``train`` and ``evaluate``.

The estimator allow-list is here so that the workflow service refuses an unknown estimator or
a bad hyperparameter when a spec is applied, without importing the training service; the check
imports the estimator's library only then (scikit-learn, or XGBoost / LightGBM from the
``boosting`` extra).

Models move between tasks as artifacts of the job (``model.skops``, ``model.onnx``), never as
pickles: a downstream task fetches them by the :class:`ModelArtifacts` references.
"""

from __future__ import annotations

import copy
import importlib
import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .data_tasks import ColumnName, DatasetRef, TableRef, TaskName
from .drift import DriftReference
from .hyperparameters import estimator_hyperparameters
from .suggestions import did_you_mean
from .task_base import TaskTypeContract

Problem = Literal["classification", "regression"]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EstimatorInfo(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    target: str = Field(description="`module:Class` of the estimator")
    problem: Problem
    extra: str | None = Field(default=None, description="The package extra that provides it")


def _e(name: str, target: str, problem: Problem, extra: str | None = None) -> EstimatorInfo:
    return EstimatorInfo(name=name, target=target, problem=problem, extra=extra)


#: The estimators a ``train`` task may name: nothing else is ever imported by name.
ESTIMATORS: dict[str, EstimatorInfo] = {
    e.name: e
    for e in (
        _e("LogisticRegression", "sklearn.linear_model:LogisticRegression", "classification"),
        _e("RidgeClassifier", "sklearn.linear_model:RidgeClassifier", "classification"),
        _e("SGDClassifier", "sklearn.linear_model:SGDClassifier", "classification"),
        _e("DecisionTreeClassifier", "sklearn.tree:DecisionTreeClassifier", "classification"),
        _e(
            "RandomForestClassifier",
            "sklearn.ensemble:RandomForestClassifier",
            "classification",
        ),
        _e("ExtraTreesClassifier", "sklearn.ensemble:ExtraTreesClassifier", "classification"),
        _e(
            "GradientBoostingClassifier",
            "sklearn.ensemble:GradientBoostingClassifier",
            "classification",
        ),
        _e(
            "HistGradientBoostingClassifier",
            "sklearn.ensemble:HistGradientBoostingClassifier",
            "classification",
        ),
        _e("KNeighborsClassifier", "sklearn.neighbors:KNeighborsClassifier", "classification"),
        _e("SVC", "sklearn.svm:SVC", "classification"),
        _e("GaussianNB", "sklearn.naive_bayes:GaussianNB", "classification"),
        _e("LinearRegression", "sklearn.linear_model:LinearRegression", "regression"),
        _e("Ridge", "sklearn.linear_model:Ridge", "regression"),
        _e("Lasso", "sklearn.linear_model:Lasso", "regression"),
        _e("ElasticNet", "sklearn.linear_model:ElasticNet", "regression"),
        _e("DecisionTreeRegressor", "sklearn.tree:DecisionTreeRegressor", "regression"),
        _e("RandomForestRegressor", "sklearn.ensemble:RandomForestRegressor", "regression"),
        _e("ExtraTreesRegressor", "sklearn.ensemble:ExtraTreesRegressor", "regression"),
        _e(
            "GradientBoostingRegressor",
            "sklearn.ensemble:GradientBoostingRegressor",
            "regression",
        ),
        _e(
            "HistGradientBoostingRegressor",
            "sklearn.ensemble:HistGradientBoostingRegressor",
            "regression",
        ),
        _e("KNeighborsRegressor", "sklearn.neighbors:KNeighborsRegressor", "regression"),
        _e("SVR", "sklearn.svm:SVR", "regression"),
        _e("XGBClassifier", "xgboost:XGBClassifier", "classification", "boosting"),
        _e("XGBRegressor", "xgboost:XGBRegressor", "regression", "boosting"),
        _e("LGBMClassifier", "lightgbm:LGBMClassifier", "classification", "boosting"),
        _e("LGBMRegressor", "lightgbm:LGBMRegressor", "regression", "boosting"),
    )
}

CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSION_METRICS = ("rmse", "mae", "r2")
#: Metrics where smaller is better; for every other metric larger is better.
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})
METRIC_NAMES = CLASSIFICATION_METRICS + REGRESSION_METRICS

Metric = Literal[
    "accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "rmse", "mae", "r2"
]
HyperValue = str | int | float | bool | None


def estimator_class(info: EstimatorInfo) -> type[Any]:
    """The estimator's class; a clear error when its package is not installed."""
    module_name, _, class_name = info.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        extra = f" (install the `{info.extra}` extra)" if info.extra else ""
        raise ValueError(f"estimator {info.name} needs the {module_name} package{extra}") from None
    cls: type[Any] = getattr(module, class_name)
    return cls


def check_hyperparameters(info: EstimatorInfo, values: dict[str, Any]) -> None:
    """Raise ``ValueError`` if ``values`` are not valid hyperparameters of the estimator: an
    unknown name, or a value its own parameter constraints refuse."""
    cls = estimator_class(info)
    estimator = cls()
    known = set(estimator.get_params(deep=False))
    unknown = sorted(set(values) - known)
    if unknown:
        hint = did_you_mean(unknown[0], known) if len(unknown) == 1 else ""
        raise ValueError(
            f"{info.name} has no hyperparameter(s) {', '.join(unknown)}{hint}; "
            f"it takes: {', '.join(sorted(known))}"
        )
    estimator.set_params(**values)
    validate = getattr(estimator, "_validate_params", None)
    # scikit-learn's own constraints (types, ranges, options); boosting libraries have none.
    if callable(validate) and hasattr(estimator, "_parameter_constraints"):
        try:
            validate()
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc)) from None


# -- train -----------------------------------------------------------------------------------


class Preprocessing(_Params):
    impute: Literal["mean", "median", "most_frequent", "none"] = Field(
        default="median", description="How missing numeric values are filled"
    )
    scale: Literal["standard", "minmax", "none"] = Field(
        default="standard", description="How numeric features are scaled"
    )
    one_hot: bool = Field(
        default=True,
        description="One-hot encode categorical (string/boolean) features; unknown categories "
        "at prediction time are ignored",
    )
    categorical: list[ColumnName] | None = Field(
        default=None, description="Categorical features (default: the string/boolean columns)"
    )


class Validation(_Params):
    method: Literal["holdout", "kfold"] = "holdout"
    test_size: float = Field(default=0.2, gt=0, lt=1, description="Hold-out fraction")
    folds: int = Field(default=5, ge=2, le=50, description="Folds of k-fold cross-validation")
    stratify: bool = Field(
        default=True, description="Stratify splits by class (classification only)"
    )
    seed: int = Field(default=0, ge=0, le=2**32 - 1)


class Search(_Params):
    method: Literal["grid", "random"] = "grid"
    space: dict[str, Annotated[list[HyperValue], Field(min_length=1, max_length=100)]] = Field(
        min_length=1, description="Hyperparameter name -> the values to try"
    )
    trials: int = Field(default=10, ge=1, le=500, description="Trials of a random search")
    metric: Metric | None = Field(
        default=None, description="What picks the best trial (default: f1 or rmse)"
    )
    folds: int = Field(default=3, ge=2, le=20, description="Cross-validation folds per trial")
    max_trials: int = Field(default=200, ge=1, le=2_000, description="Refuse larger grids")


class SageMakerSettings(_Params):
    image: str = Field(min_length=1, max_length=512, description="Training image URI (ECR)")
    role_arn: str = Field(
        pattern=r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]+$", max_length=600
    )
    bucket: str = Field(
        pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        description="Bucket for the training input and the model output",
    )
    prefix: str = Field(default="armillary", pattern=r"^[A-Za-z0-9!_.*'()/-]{1,200}$")
    instance_type: str = Field(default="ml.m5.large", pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
    instance_count: int = Field(default=1, ge=1, le=100)
    volume_size_gb: int = Field(default=30, ge=1, le=16_384)
    max_runtime_seconds: int = Field(default=86_400, ge=60, le=2_419_200)
    region: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    poll_seconds: float = Field(default=15.0, ge=0.05, le=600)


def _hyperparameters_by_estimator(schema: dict[str, Any]) -> None:
    """Each estimator's hyperparameters (types, ranges, defaults) in the published schema:
    the ``hyperparameters`` and the search ``space`` of a task take only its own names."""
    schema["allOf"] = [
        {
            "if": {"properties": {"estimator": {"const": name}}, "required": ["estimator"]},
            "then": {
                "properties": {
                    "hyperparameters": hyperparameters,
                    "search": {
                        "properties": {
                            "space": {
                                "propertyNames": {
                                    "enum": sorted(hyperparameters.get("properties", {}))
                                },
                            }
                        }
                    },
                }
            },
        }
        for name, hyperparameters in copy.deepcopy(estimator_hyperparameters()).items()
    ]


class TrainTracking(_Params):
    """Where the task's runs go in the tracking service (ADR 0041): a parent run for the task,
    one nested run per search trial."""

    enabled: bool = Field(default=True, description="Record the task's runs")
    experiment: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="The experiment (made if missing); default: the workflow's name",
    )


class TrainParams(_Params):
    # Built on demand (GET /api/v1/task-types): it imports every estimator's library.
    model_config = ConfigDict(extra="forbid", json_schema_extra=_hyperparameters_by_estimator)

    input: TaskName = Field(description="The upstream task whose table is the training data")
    target: ColumnName = Field(description="The column to predict")
    features: list[ColumnName] | None = Field(
        default=None, min_length=1, description="Feature columns (default: every other column)"
    )
    estimator: str = Field(
        description="An estimator of the allow-list, e.g. RandomForestClassifier",
        json_schema_extra={"enum": [name for name in sorted(ESTIMATORS)]},
    )
    hyperparameters: dict[str, HyperValue] = Field(default_factory=dict)
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)
    validation: Validation = Field(default_factory=Validation)
    search: Search | None = Field(
        default=None, description="Grid or random search; every trial is recorded"
    )
    backend: Literal["local", "sagemaker"] = "local"
    sagemaker: SageMakerSettings | None = None
    onnx: bool = Field(default=True, description="Also export ONNX when the model converts")
    tracking: TrainTracking = Field(
        default_factory=TrainTracking,
        description="The task and its trials as runs of an experiment (the workflow's name)",
    )

    @model_validator(mode="after")
    def _check(self) -> TrainParams:
        if self.features is not None and self.target in self.features:
            raise ValueError("the target must not be one of the features")
        if (self.backend == "sagemaker") != (self.sagemaker is not None):
            raise ValueError(
                "`sagemaker` settings are needed with backend sagemaker, and only then"
            )
        # A spec's reference (`${params.<name>}`) is checked once the job resolves it: the
        # task validates its parameters again before it runs.
        if _is_reference(self.estimator):
            return self
        info = ESTIMATORS.get(self.estimator)
        if info is None:
            hint = did_you_mean(self.estimator, ESTIMATORS)
            raise ValueError(
                f"unknown estimator {self.estimator!r}{hint}; "
                f"allowed: {', '.join(sorted(ESTIMATORS))}"
            )
        if self.search is not None and self.search.metric is not None:
            _check_metric(info.problem, self.search.metric)
        fixed = {k: v for k, v in self.hyperparameters.items() if not _is_reference(v)}
        check_hyperparameters(info, fixed)
        if self.search is not None:
            for name, values in self.search.space.items():
                for value in values:
                    if not _is_reference(value):
                        check_hyperparameters(info, {**fixed, name: value})
        return self

    @property
    def problem(self) -> Problem:
        return ESTIMATORS[self.estimator].problem


def _is_reference(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("${") and value.endswith("}")


def _check_metric(problem: Problem, metric: str) -> None:
    allowed = CLASSIFICATION_METRICS if problem == "classification" else REGRESSION_METRICS
    if metric not in allowed:
        raise ValueError(f"{metric} is not a {problem} metric; use one of {', '.join(allowed)}")


class ModelArtifacts(BaseModel):
    """Where a trained model's files are among the job's artifacts (each a :class:`TableRef`-
    style reference ``{job_id, task, name}``)."""

    model_config = ConfigDict(extra="forbid")
    skops: TableRef | None = Field(default=None, description="The fitted pipeline (skops)")
    onnx: TableRef | None = Field(default=None, description="ONNX export, when it converts")
    onnx_parity: TableRef | None = Field(
        default=None,
        description="The training rows (NumPy .npy) the deferred ONNX export must reproduce",
    )
    signature: TableRef
    environment: TableRef
    importances: TableRef | None = None
    trials: TableRef | None = None


class FeatureSpec(BaseModel):
    """One column of a signature. ``nullable`` and ``imputed`` matter for inputs only: the
    prediction service refuses a null in an input that is neither (an uploaded model whose
    signature says nothing takes no nulls)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    dtype: str
    nullable: bool = Field(
        default=False, description="The model itself takes a missing value (null) here"
    )
    imputed: bool = Field(
        default=False,
        description="The model's pipeline fills in a missing value here (an imputer, or an "
        "encoder that codes a missing category)",
    )


class Signature(BaseModel):
    """The model's inputs and outputs, checked by the prediction service."""

    model_config = ConfigDict(extra="forbid")
    inputs: list[FeatureSpec]
    target: FeatureSpec
    problem: Problem
    classes: list[str | int | float | bool] | None = None


class Trial(BaseModel):
    model_config = ConfigDict(extra="forbid")
    number: int
    hyperparameters: dict[str, Any]
    metrics: dict[str, float]
    best: bool = False


#: The training rows a deferred ONNX export is checked against (one of the train task's files).
ONNX_PARITY_FILE = "onnx_parity.npy"


class OnnxState(BaseModel):
    """Where a model's ONNX export stands: ``pending`` (to be exported after the job),
    ``ready`` (``model.onnx`` exists and matched), ``failed`` (``reason`` says why)."""

    model_config = ConfigDict(extra="forbid")
    status: Literal["pending", "ready", "failed"]
    reason: str | None = Field(default=None, max_length=1000)
    job_id: str | None = Field(default=None, description="The export job, when there is one")


class TrainOutputs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    estimator: str
    problem: Problem
    format: Literal["skops", "onnx"] = Field(description="The model's primary format")
    artifacts: ModelArtifacts
    metrics: dict[str, float] = Field(description="Hold-out metrics, or k-fold means")
    metrics_std: dict[str, float] = Field(default_factory=dict, description="k-fold std")
    hyperparameters: dict[str, Any] = Field(description="Those the final model was fitted with")
    signature: Signature
    rows: int = Field(ge=0, description="Rows of training data")
    table_sha256: str | None = Field(default=None, description="SHA-256 of the training table")
    holdout: TableRef | None = Field(default=None, description="The hold-out rows (holdout)")
    trials: int = Field(default=0, ge=0, description="Search trials run")
    backend: Literal["local", "sagemaker"] = "local"
    training_job: str | None = Field(default=None, description="SageMaker training job name")
    dataset: DatasetRef | None = Field(
        default=None, description="The dataset version the input table was read from, if known"
    )
    onnx: OnnxState | None = Field(
        default=None,
        description="`pending`: exported after the model is registered (ADR 0018); `failed`: "
        "this model cannot be exported (reason given); absent when not asked for",
    )
    drift_reference: DriftReference | None = Field(
        default=None,
        description="The training rows' distribution per feature, stored at registration "
        "for drift (ADR 0032)",
    )


# -- onnx_export -----------------------------------------------------------------------------


class OnnxExportParams(_Params):
    model: str = Field(max_length=128, description="The registered model")
    version: int = Field(ge=1, description="Its version whose model.skops is exported")
    parity: TableRef = Field(description="The training rows the export must reproduce")


class OnnxExportOutputs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    onnx: TableRef | None = Field(description="model.onnx, when it converted and matched")
    reason: str | None = Field(default=None, description="Why there is no model.onnx")
    parity_rows: int = Field(ge=0, description="Rows the export reproduced (or was tried on)")


# -- evaluate --------------------------------------------------------------------------------


class Threshold(_Params):
    min: float | None = Field(default=None, description="Fail below this")
    max: float | None = Field(default=None, description="Fail above this")

    @model_validator(mode="after")
    def _one(self) -> Threshold:
        if self.min is None and self.max is None:
            raise ValueError("give `min`, `max` or both")
        for bound in (self.min, self.max):
            if bound is not None and not math.isfinite(bound):
                raise ValueError("thresholds must be finite numbers")
        return self


class ChampionComparison(_Params):
    model: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", description="A registered model's name"
    )
    alias: str = Field(default="champion", pattern=r"^[a-z][a-z0-9_-]{0,63}$")
    metric: Metric | None = Field(default=None, description="Default: f1 or rmse")
    must_beat: bool = Field(
        default=False, description="Fail the task unless the new model beats the champion"
    )


class EvaluateParams(_Params):
    model: TaskName = Field(description="The upstream `train` task whose model is evaluated")
    input: TaskName | None = Field(
        default=None,
        description="An upstream task whose table holds held-out rows (default: the train "
        "task's hold-out split)",
    )
    thresholds: dict[Metric, Threshold] = Field(
        default_factory=dict, description="Fail the task (closed) when a metric misses"
    )
    compare: ChampionComparison | None = None


class ThresholdResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metric: str
    value: float | None
    min: float | None
    max: float | None
    passed: bool


class ChampionResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str
    alias: str
    version: int | None = Field(description="None when the alias is not set yet")
    metric: str
    champion_value: float | None
    challenger_value: float
    better: bool


class EvaluateOutputs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metrics: dict[str, float]
    rows: int
    passed: bool
    thresholds: list[ThresholdResult]
    champion: ChampionResult | None = None
    table_sha256: str | None = None


class EvaluationFailed(Exception):
    """A threshold was missed (or the champion was not beaten): the task fails closed; the
    report explains which."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


TRAIN = TaskTypeContract(
    name="train",
    description=(
        "Fits an allow-listed estimator (scikit-learn; XGBoost/LightGBM with the `boosting` "
        "extra) inside a preprocessing pipeline on the table of the upstream task `input`, "
        "with a hold-out split or k-fold cross-validation and an optional grid/random search. "
        "Stores the model as skops with its signature, environment and feature importances; "
        "ONNX is exported after the model is registered, off the job's path. "
        "`backend: sagemaker` runs it as a SageMaker training job."
    ),
    params=TrainParams,
    outputs=TrainOutputs,
    input_params=("input",),
    # The SageMaker backend runs in the worker, which holds the AWS credentials: no
    # credential enters a sandbox (ADR 0011).
    worker_calls=("sagemaker_train",),
)
EVALUATE = TaskTypeContract(
    name="evaluate",
    description=(
        "Scores the model of the upstream `train` task `model` on held-out rows, fails the "
        "task when a threshold is missed (fail closed), and compares it with a registered "
        "model's current `champion`."
    ),
    params=EvaluateParams,
    outputs=EvaluateOutputs,
    input_params=("model", "input"),
)

ONNX_EXPORT = TaskTypeContract(
    name="onnx_export",
    description=(
        "Converts version `version` of registered model `model` (its model.skops) to ONNX and "
        "keeps model.onnx only if it predicts what the skops model does on the `parity` rows. "
        "The platform runs it after a training job registers a version (ADR 0018)."
    ),
    params=OnnxExportParams,
    outputs=OnnxExportOutputs,
)

TRAINING_TASK_TYPES: dict[str, TaskTypeContract] = {
    c.name: c for c in (TRAIN, EVALUATE, ONNX_EXPORT)
}
