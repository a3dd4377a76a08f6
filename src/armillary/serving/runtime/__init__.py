"""Model loading and inference for the serving service: no database, no HTTP.

Models load from skops (through a trusted-type allow-list, never unpickled) or ONNX (ONNX
Runtime, CPU); request bodies are checked against the model's signature before they reach it.
"""

from __future__ import annotations

from .batching import MicroBatcher
from .cache import ModelCache
from .errors import BadInput, ModelLoadError
from .features import DEFAULT_MAX_ROWS
from .model import LoadedModel, OnnxModel, Prediction, SkopsModel, load_model
from .records import decode_records
from .v2 import MATRIX_INPUT, decode_v2, encode_v2

__all__ = [
    "DEFAULT_MAX_ROWS",
    "MATRIX_INPUT",
    "BadInput",
    "LoadedModel",
    "MicroBatcher",
    "ModelCache",
    "ModelLoadError",
    "OnnxModel",
    "Prediction",
    "SkopsModel",
    "decode_records",
    "decode_v2",
    "encode_v2",
    "load_model",
]
