"""deploy/prometheus/alertmanager.yml: Alertmanager (Debian's amtool) accepts it, and every
receiver posts to the platform's Alertmanager route with a project, resolved notices and the
bearer secret from a file (never inline)."""

from __future__ import annotations

import shutil
from urllib.parse import parse_qs, urlsplit

import yaml

from armillary.workflows.alerts.alertmanager import router
from tests.deploy.conftest import DEPLOY, run

CONFIG = DEPLOY / "prometheus" / "alertmanager.yml"


def test_amtool_accepts_the_config() -> None:
    amtool = shutil.which("amtool")
    assert amtool, "install Debian's prometheus-alertmanager package (it ships amtool)"
    assert "SUCCESS" in run(amtool, "check-config", str(CONFIG)).stdout


def test_every_receiver_posts_to_the_platform_route() -> None:
    (path,) = [route.path for route in router.routes]  # type: ignore[attr-defined]
    receivers = yaml.safe_load(CONFIG.read_text())["receivers"]
    assert receivers
    for receiver in receivers:
        for hook in receiver["webhook_configs"]:
            url = urlsplit(hook["url"])
            assert url.path == path, hook["url"]
            assert parse_qs(url.query)["project"], hook["url"]
            assert hook["send_resolved"] is True
            auth = hook["http_config"]["authorization"]
            assert auth["type"] == "Bearer"
            assert "credentials" not in auth
            assert auth["credentials_file"].startswith("/etc/alertmanager/secrets/")
