"""The registry's model-file checks: :mod:`armillary.kit.model_files` (one policy for every
service)."""

from armillary.kit.model_files import (
    FILE_NAMES,
    ModelFormat,
    UnsafeModelFile,
    UnsupportedModelFile,
    check_named,
    check_onnx,
    check_skops,
    detect_and_check,
)

__all__ = [
    "FILE_NAMES",
    "ModelFormat",
    "UnsafeModelFile",
    "UnsupportedModelFile",
    "check_named",
    "check_onnx",
    "check_skops",
    "detect_and_check",
]
