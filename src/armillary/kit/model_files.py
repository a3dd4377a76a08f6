"""Model files: checked before they are accepted or loaded, and loaded only as ONNX or skops.

One policy for every service that touches a model (training scores it, the registry accepts
it, serving loads it). Checking never loads a model:

skops files are zip archives whose ``schema.json`` names every type the model needs;
``skops.io.get_untrusted_types`` reads that list without building anything, and the file is
refused unless each type is on :data:`TRUSTED_SKOPS_TYPES` (skops' own default trust covers
plain scikit-learn estimators and numpy arrays). ONNX files are protobuf: parsed, checked, and
refused when they use operators outside the standard domains (custom ops run native code in
the serving runtime) or external data files (paths on the server). Pickle and joblib files are
refused outright: loading them runs arbitrary code.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from armillary.kit.errors import DomainError

if TYPE_CHECKING:
    import onnxruntime as ort

# skops, onnx and onnxruntime are imported where used: together they pull in scikit-learn and
# SciPy, seconds of start-up that every process importing this module (API, CLI, workers)
# would otherwise pay.

ModelFormat = Literal["skops", "onnx"]

#: Types a skops model may need beyond skops' defaults: what the allow-listed estimators
#: (contracts.training.ESTIMATORS) and their preprocessing store. Nothing else is accepted.
TRUSTED_SKOPS_TYPES: Final = frozenset(
    {
        "collections.OrderedDict",
        "numpy.dtype",
        "numpy.random.mtrand.RandomState",
        "numpy.random._generator.Generator",
        "numpy.random._pcg64.PCG64",
        "numpy.random._mt19937.MT19937",
        "scipy.sparse._csr.csr_matrix",
        "scipy.sparse._csc.csc_matrix",
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.neighbors._ball_tree.BallTree",
        "sklearn.metrics._dist_metrics.EuclideanDistance64",
        "sklearn.metrics._dist_metrics.ManhattanDistance64",
        "sklearn.metrics._dist_metrics.ChebyshevDistance64",
        "sklearn.metrics._dist_metrics.MinkowskiDistance64",
        "xgboost.core.Booster",
        "xgboost.sklearn.XGBClassifier",
        "xgboost.sklearn.XGBRegressor",
        "lightgbm.basic.Booster",
        "lightgbm.sklearn.LGBMClassifier",
        "lightgbm.sklearn.LGBMRegressor",
    }
)
#: Operator domains an ONNX model may use: the standard ones only.
ONNX_DOMAINS: Final = frozenset({"", "ai.onnx", "ai.onnx.ml"})
MODEL_FILE_SKOPS: Final = "model.skops"
MODEL_FILE_ONNX: Final = "model.onnx"
FILE_NAMES: Final[dict[ModelFormat, str]] = {"skops": MODEL_FILE_SKOPS, "onnx": MODEL_FILE_ONNX}

_SKOPS_SCHEMA = "schema.json"
_MAX_SCHEMA_BYTES = 64 * 1024**2
_MAX_ZIP_MEMBERS = 100_000
_PICKLE_PROTOCOL_MARK = 0x80
_REFUSED_PICKLE = (
    "Pickle and joblib files are refused: loading them runs arbitrary code. "
    "Upload the model as ONNX (model.onnx) or skops (model.skops)"
)


class ModelFileRefused(DomainError):
    """A model file this platform does not load."""

    status = 422
    title = "Model file refused"


class UnsupportedModelFile(ModelFileRefused):
    """Neither a skops nor an ONNX file (a pickle, a joblib dump, anything else)."""

    status = 415
    title = "Unsupported model file"


class UnsafeModelFile(ModelFileRefused):
    """A skops or ONNX file that fails its checks."""

    status = 422
    title = "Model file refused"


def detect_and_check(path: Path) -> ModelFormat:
    """The format of an uploaded model file, by content, after checking it (blocking)."""
    with path.open("rb") as handle:
        head = handle.read(8)
    if zipfile.is_zipfile(path):
        check_skops(path)
        return "skops"
    if _looks_like_pickle(head):
        raise UnsupportedModelFile(_REFUSED_PICKLE)
    check_onnx(path, unsupported_if_unparsable=True)
    return "onnx"


def check_named(name: str, path: Path) -> None:
    """Check a job's artifact ``model.skops`` or ``model.onnx`` as what its name says."""
    if name == MODEL_FILE_SKOPS:
        if not zipfile.is_zipfile(path):
            raise UnsafeModelFile(f"{name} is not a skops file (a zip archive)")
        check_skops(path)
    elif name == MODEL_FILE_ONNX:
        check_onnx(path)


def _looks_like_pickle(head: bytes) -> bool:
    # Protocol 2+ pickles start with PROTO; joblib's compressed dumps with zlib/gzip/bz2/xz.
    if len(head) >= 2 and head[0] == _PICKLE_PROTOCOL_MARK and 2 <= head[1] <= 5:
        return True
    return head.startswith(
        (b"\x78\x9c", b"\x78\x01", b"\x78\xda", b"\x1f\x8b", b"BZh", b"\xfd7zXZ")
    )


def check_skops(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if len(members) > _MAX_ZIP_MEMBERS:
                raise UnsafeModelFile("The skops archive has too many members")
            schema = next((m for m in members if m.filename == _SKOPS_SCHEMA), None)
            if schema is None:
                if any(m.filename.endswith((".pkl", ".pickle", ".joblib")) for m in members):
                    raise UnsupportedModelFile(_REFUSED_PICKLE)
                raise UnsupportedModelFile(
                    "The zip archive is not a skops file (it has no schema.json)"
                )
            if schema.file_size > _MAX_SCHEMA_BYTES:
                raise UnsafeModelFile("The skops schema is too large")
    except zipfile.BadZipFile as exc:
        raise UnsafeModelFile("The skops file is not a valid zip archive") from exc
    import skops.io

    try:
        untrusted = skops.io.get_untrusted_types(file=path)
    except Exception as exc:  # any parse failure of an attacker's file
        raise UnsafeModelFile("The skops file is not valid") from exc
    refused = sorted(set(untrusted) - TRUSTED_SKOPS_TYPES)
    if refused:
        shown = ", ".join(refused[:10])
        raise UnsafeModelFile(
            f"The skops file needs types that are not trusted: {shown}",
            extra={"untrusted_types": refused[:50]},
        )


def check_onnx(path: Path, *, unsupported_if_unparsable: bool = False) -> None:
    import onnx

    try:
        # External data would name files on this server: never followed.
        model = onnx.load(str(path), load_external_data=False)
        parsed = model.ir_version > 0 and model.HasField("graph")
    except Exception:
        parsed = False
    if not parsed:
        if unsupported_if_unparsable:
            raise UnsupportedModelFile(
                "The file is neither an ONNX nor a skops model; upload model.onnx or model.skops"
            )
        raise UnsafeModelFile("The file is not a valid ONNX model")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise UnsafeModelFile("The file is not a valid ONNX model") from exc
    if len(model.functions) > 0:
        raise UnsafeModelFile("ONNX models with local functions are not accepted")
    domains = {opset.domain for opset in model.opset_import}
    domains |= {node.domain for node in _nodes(model.graph)}
    custom = sorted(domains - ONNX_DOMAINS)
    if custom:
        raise UnsafeModelFile(
            f"The ONNX model uses operators outside the standard domains: {', '.join(custom)}"
        )
    if any(tensor.data_location == onnx.TensorProto.EXTERNAL for tensor in _tensors(model.graph)):
        raise UnsafeModelFile("ONNX models with external data files are not accepted")


def _subgraphs(node: Any) -> Iterator[Any]:
    for attribute in node.attribute:
        if attribute.HasField("g"):
            yield attribute.g
        yield from attribute.graphs


def _nodes(graph: Any) -> Iterator[Any]:
    for node in graph.node:
        yield node
        for sub in _subgraphs(node):
            yield from _nodes(sub)


def _tensors(graph: Any) -> Iterator[Any]:
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
        for sub in _subgraphs(node):
            yield from _tensors(sub)


def load_skops(path: Path) -> Any:
    """The object in skops file ``path``, after :func:`check_skops` (any type outside
    :data:`TRUSTED_SKOPS_TYPES` and skops' own defaults refuses the file, nothing in it is
    built); skops then trusts exactly the types the file lists, nothing more."""
    if not zipfile.is_zipfile(path):
        raise UnsafeModelFile("The model file is not a skops archive")
    check_skops(path)
    import skops.io

    try:
        untrusted = skops.io.get_untrusted_types(file=path)
        return skops.io.load(path, trusted=list(untrusted))
    except Exception as exc:  # skops refuses anything it was not told to trust
        raise UnsafeModelFile("The skops file could not be loaded") from exc


def onnx_session(path: Path, *, threads: int | None = None) -> ort.InferenceSession:
    """An ONNX Runtime session (CPU) over the model at ``path``, after :func:`check_onnx`.
    ``threads`` pins intra- and inter-op threads (serving: 1 per session, sequential)."""
    check_onnx(path)
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # a corrupt or hostile file
        raise UnsafeModelFile("The ONNX model cannot be loaded") from exc
