"""Loading models safely: skops with an explicit allow-list of types, or ONNX.

A model file is data from a job, i.e. from a user: it is never unpickled. skops lists the
types a file would instantiate before loading it; any type outside the allow-list refuses the
whole file, and the load trusts exactly the listed types, nothing more.
"""

from __future__ import annotations

import importlib
import zipfile
from pathlib import Path
from typing import Any

import onnxruntime as ort
import skops.io as sio

#: Packages whose classes our pipelines are built of. A name under one of them is trusted only
#: if it resolves to a class (not a function such as a data set downloader).
TRUSTED_PACKAGES = ("sklearn", "xgboost", "lightgbm")
#: Other types those classes' state holds (dtypes, arrays, containers, sparse matrices).
TRUSTED_TYPES = frozenset(
    {
        "numpy.dtype",
        "numpy.ndarray",
        "numpy.random.mtrand.RandomState",
        "numpy.random._mt19937.MT19937",
        "numpy.random._generator.Generator",
        "numpy.random._pcg64.PCG64",
        "collections.OrderedDict",
        "collections.defaultdict",
        "scipy.sparse._csr.csr_matrix",
        "scipy.sparse._csc.csc_matrix",
        "scipy.sparse._csr.csr_array",
        "scipy.sparse._csc.csc_array",
    }
    | {f"numpy.{t}" for t in ("float16", "float32", "float64", "int8", "int16", "int32")}
    | {f"numpy.{t}" for t in ("int64", "uint8", "uint16", "uint32", "uint64", "bool_", "str_")}
)


class UntrustedModel(Exception):
    """The file is not a model this platform loads (not skops, or it names other types)."""


def is_trusted_type(name: str) -> bool:
    """Whether ``name`` (``module.Class``) is a type our pipelines may contain."""
    if name in TRUSTED_TYPES:
        return True
    module_name, _, attribute = name.rpartition(".")
    if module_name.split(".", 1)[0] not in TRUSTED_PACKAGES or not attribute:
        return False
    try:
        found = getattr(importlib.import_module(module_name), attribute, None)
    except ImportError:
        return False
    return isinstance(found, type)


def load_skops(path: Path) -> Any:
    """The object in skops file ``path``; raises :class:`UntrustedModel` if the file is not
    a skops archive or names any type outside the allow-list (nothing in it is run then)."""
    if not zipfile.is_zipfile(path):
        raise UntrustedModel("the model file is not a skops archive")
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # any parse failure means: refuse
        raise UntrustedModel(f"the model file cannot be read as skops: {exc}") from None
    refused = sorted(t for t in untrusted if not is_trusted_type(t))
    if refused:
        raise UntrustedModel(f"the model file names types that are not allowed: {refused}")
    try:
        return sio.load(path, trusted=list(untrusted))
    except Exception as exc:  # skops refuses anything it was not told to trust
        raise UntrustedModel(f"the model file could not be loaded: {exc}") from None


def load_onnx_session(path: Path) -> ort.InferenceSession:
    """An ONNX Runtime session over the model at ``path`` (CPU)."""
    try:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # a corrupt or hostile file
        raise UntrustedModel(f"the ONNX model cannot be loaded: {exc}") from None
