"""Python client of the Armillary API.

Example::

    from armillary.sdk import Client

    with Client("https://armillary.example.com") as client:
        client.login("me@example.com", password)
        result = client.datasets.upload("demo", "iris", "iris.csv")
        client.datasets.download("demo", "iris", result.version["number"], "copy.csv")

The package depends on httpx only, not on the server's code.
"""

from .client import DEFAULT_TIMEOUT, Client
from .datasets import Datasets
from .errors import ArmillaryError, ChecksumMismatch, ConnectionFailed
from .types import Column, Dataset, Progress, Tokens, UploadResult, Version, VersionDetail

__all__ = [
    "DEFAULT_TIMEOUT",
    "ArmillaryError",
    "ChecksumMismatch",
    "Client",
    "Column",
    "ConnectionFailed",
    "Dataset",
    "Datasets",
    "Progress",
    "Tokens",
    "UploadResult",
    "Version",
    "VersionDetail",
]
