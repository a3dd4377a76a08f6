"""The serving service's events; the contract lives in ``armillary.contracts.serving``."""

from __future__ import annotations

from armillary.contracts.serving import DeploymentChanged

__all__ = ["DeploymentChanged"]
