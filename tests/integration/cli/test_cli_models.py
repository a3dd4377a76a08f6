"""``armillary models list/show/compare`` against the platform on a loopback port, with two
versions uploaded through the SDK (skops files of real scikit-learn models)."""

from __future__ import annotations

from pathlib import Path

import pytest
import skops.io as sio
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier
from tests.integration.cli.test_cli_datasets import WIDE, config_dir, login, runner
from tests.integration.sdk.test_sdk_datasets import Account, StartServer, provision, start_server
from typer.testing import CliRunner

from armillary.cli.main import app
from armillary.sdk import Client
from armillary.sdk.errors import ArmillaryError

__all__ = ["config_dir", "runner", "start_server"]  # fixtures, used by name


@pytest.fixture
def account(start_server: StartServer) -> Account:
    return provision(start_server())


def _model_file(path: Path, estimator: object) -> Path:
    x, y = load_iris(return_X_y=True)
    estimator.fit(x, y)  # type: ignore[attr-defined]
    sio.dump(estimator, path)
    return path


@pytest.fixture
def two_versions(account: Account, tmp_path: Path) -> Account:
    with Client(account.url, token=account.token) as client:
        client.models.upload(
            account.project,
            "iris-clf",
            _model_file(tmp_path / "tree.skops", DecisionTreeClassifier(max_depth=2)),
            metrics={"accuracy": 0.91, "f1": 0.9},
            params={"max_depth": 2},
            description="a shallow tree",
        )
        client.models.upload(
            account.project,
            "iris-clf",
            _model_file(tmp_path / "logreg.skops", LogisticRegression(max_iter=500)),
            metrics={"accuracy": 0.97, "f1": 0.965},
            params={"max_depth": 5},
        )
        client.models.set_alias(account.project, "iris-clf", "champion", 2, "better f1")
    return account


def test_list_show_and_compare(runner: CliRunner, two_versions: Account) -> None:
    account = two_versions
    login(runner, account)
    listed = runner.invoke(app, ["models", "list", "-p", account.project], env=WIDE)
    assert listed.exit_code == 0, listed.output
    assert "iris-clf" in listed.stdout
    assert "champion→v2" in listed.stdout

    shown = runner.invoke(
        app,
        ["models", "show", "-p", account.project, "-m", "iris-clf", "--order-by", "metrics.f1"],
        env=WIDE,
    )
    assert shown.exit_code == 0, shown.output
    rows = [line for line in shown.stdout.splitlines() if "0.9" in line]
    # Best f1 first; the champion alias is on its version's row.
    assert "0.965" in rows[0]
    assert "champion" in rows[0]
    assert "0.91" in rows[1]
    assert "champion" not in rows[1]

    one = runner.invoke(
        app, ["models", "show", "-p", account.project, "-m", "iris-clf", "-v", "1"], env=WIDE
    )
    assert one.exit_code == 0, one.output
    assert "a shallow tree" in one.stdout
    assert "accuracy" in one.stdout

    compared = runner.invoke(
        app, ["models", "compare", "-p", account.project, "-m", "iris-clf", "1", "2"], env=WIDE
    )
    assert compared.exit_code == 0, compared.output
    f1 = next(line for line in compared.stdout.splitlines() if "f1" in line)
    assert "0.9" in f1
    assert "0.965" in f1
    # The parameter that differs is shown with both values.
    depth = next(line for line in compared.stdout.splitlines() if "max_depth" in line)
    assert "2" in depth
    assert "5" in depth


def test_a_pickle_is_refused_by_the_sdk_upload(account: Account, tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01.")
    with (
        Client(account.url, token=account.token) as client,
        pytest.raises(ArmillaryError) as refused,
    ):
        client.models.upload(account.project, "iris-clf", path)
    assert refused.value.status == 415


METRICS = {
    "accuracy": 0.9412345,
    "f1": 0.9387654,
    "precision": 0.9511111,
    "recall": 0.9276543,
    "roc_auc": 0.9876543,
    "log_loss": 0.1234567,
}


def test_show_at_80_columns_keeps_metrics_whole(
    runner: CliRunner, account: Account, tmp_path: Path
) -> None:
    import json

    with Client(account.url, token=account.token) as client:
        client.models.upload(
            account.project,
            "many-metrics",
            _model_file(tmp_path / "tree.skops", DecisionTreeClassifier(max_depth=2)),
            metrics=METRICS,
        )
    login(runner, account)
    base = ["models", "show", "-p", account.project, "-m", "many-metrics"]

    narrow = runner.invoke(app, base, env={"COLUMNS": "80"})

    assert narrow.exit_code == 0, narrow.output
    assert "…" not in narrow.stdout
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 80
    cells = [line.split("│") for line in narrow.stdout.splitlines() if line.count("│") > 2]
    row = next("│".join(cell) for cell in cells if cell[1].strip() == "1")
    shown = [name for name in METRICS if f"{METRICS[name]:.4g}" in row]
    assert shown[0] == "accuracy"  # the first metric always stays
    hidden = [name for name in METRICS if name not in shown]
    if hidden:
        assert f"Not shown at this width: {', '.join(hidden)}" in narrow.stdout

    as_json = runner.invoke(app, [*base, "-o", "json"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout)["versions"][0]["metrics"] == METRICS


def test_show_says_where_each_versions_onnx_export_stands(
    runner: CliRunner, account: Account, tmp_path: Path
) -> None:
    import numpy as np
    from skl2onnx import to_onnx

    x, y = load_iris(return_X_y=True)
    onnx_path = tmp_path / "logreg.onnx"
    converted = to_onnx(LogisticRegression(max_iter=500).fit(x, y), x[:1].astype(np.float32))
    onnx_path.write_bytes(converted.SerializeToString())
    with Client(account.url, token=account.token) as client:
        client.models.upload(
            account.project, "exports", _model_file(tmp_path / "t.skops", DecisionTreeClassifier())
        )
        client.models.upload(account.project, "exports", onnx_path)
    login(runner, account)
    base = ["models", "show", "-p", account.project, "-m", "exports"]

    table = runner.invoke(app, base, env=WIDE)

    assert table.exit_code == 0, table.output
    assert "ONNX" in table.stdout
    rows = {line.split("│")[1].strip(): line for line in table.stdout.splitlines() if "│" in line}
    assert "ready" in rows["2"]
    assert "ready" not in rows["1"]
    one = runner.invoke(app, [*base, "-v", "2"], env=WIDE)
    assert one.exit_code == 0, one.output
    assert "onnx: ready" in one.stdout
