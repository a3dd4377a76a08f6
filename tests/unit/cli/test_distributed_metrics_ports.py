"""`armillary up --distributed` gives every process a /metrics listener of its own: the six
services, the scheduler, each worker and the console, on consecutive ports from
ARMILLARY_METRICS_PORT (none when it is 0). The engine's processes take theirs on
ARMILLARY_WORKFLOWS_METRICS_PORT."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import make_settings

from armillary.cli import distributed


def metrics_port(child: distributed.Child) -> int:
    env = child.env
    if child.name == "scheduler" or child.name.startswith("worker-"):
        assert env["ARMILLARY_METRICS_PORT"] == "0"
        return int(env["ARMILLARY_WORKFLOWS_METRICS_PORT"])
    return int(env["ARMILLARY_METRICS_PORT"])


def test_every_process_has_a_metrics_port_of_its_own(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home", metrics_port=19000)
    children = distributed.children(settings, "127.0.0.1", 8000, workers=2)
    ported = {c.name: metrics_port(c) for c in children if c.name != "gateway"}
    assert ported == {
        "identity": 19000,
        "data": 19001,
        "workflows": 19002,
        "registry": 19003,
        "serving": 19004,
        "tracking": 19005,
        "scheduler": 19006,
        "worker-1": 19007,
        "worker-2": 19008,
        "console": 19009,
    }


def test_no_listener_when_metrics_are_off(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home", metrics_port=0)
    for child in distributed.children(settings, "127.0.0.1", 8000, workers=1):
        if child.name != "gateway":
            assert child.env.get("ARMILLARY_METRICS_PORT") == "0", child.name
            assert "ARMILLARY_WORKFLOWS_METRICS_PORT" not in child.env, child.name
