"""The two ways the runtime refuses: a bad request body, or a model file it will not load."""

from __future__ import annotations

from armillary.kit.errors import ServiceUnavailable, Unprocessable


class BadInput(Unprocessable):
    """The request's rows do not fit the model's signature; the message says where and is
    safe to show the client (rendered as 422 problem+json)."""


class ModelLoadError(ServiceUnavailable):
    """A model file cannot be served (not skops/ONNX, untrusted types, corrupt, or not what
    its signature says). The message names no path; the cause is chained for the logs."""
