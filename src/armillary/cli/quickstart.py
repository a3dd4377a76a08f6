"""``armillary quickstart``: the whole path once, against a running platform.

Creates a demo project, uploads scikit-learn's bundled breast-cancer data, applies a workflow
ingest → validate → train → evaluate → register → deploy, runs it with a live display, sends
predictions for held-out rows to the deployment it made, records their true labels as feedback
and prints where to look next (with ``--output json|yaml``: the progress on stderr, and on
stdout what was made, each prediction and those places). Run it again with ``--project`` to
reuse a project: identical data is not uploaded twice, an unchanged workflow keeps its
version, and the new model version replaces the deployment's variant.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from armillary.cli.job_views import follow, summary
from armillary.cli.output import OutputFormat, OutputOption, fit_table, print_data, terminal
from armillary.cli.password import PasswordStdinOption, read_password
from armillary.cli.session import error_message, fail, load_credentials, normalize_url
from armillary.sdk import ArmillaryError, Client, Tokens
from armillary.sdk.credentials import TOKEN_ENV, URL_ENV, save_credentials

console = terminal(soft_wrap=True)
err = terminal(stderr=True, highlight=False, soft_wrap=True)

DATASET = "breast-cancer"
WORKFLOW = "quickstart"
MODEL = "breast-cancer"
DEPLOYMENT = "demo"
TARGET = "diagnosis"
HELD_OUT = 20
#: How long predict may answer "not there yet" after the deploy task (an event away).
PREDICT_WAIT_SECONDS = 60.0


def _segment(value: str) -> str:
    return quote(value, safe="")


def demo_data(directory: Path, held_out: int = HELD_OUT) -> tuple[Path, list[dict[str, Any]]]:
    """scikit-learn's breast-cancer set as a CSV (written with Polars) for training, and
    ``held_out`` rows kept aside (never uploaded) to send as predictions."""
    import numpy as np
    import polars as pl
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    names = [str(n).replace(" ", "_") for n in bunch.feature_names]
    frame = pl.DataFrame(bunch.data, schema=names, orient="row").with_columns(
        pl.Series(TARGET, [str(bunch.target_names[t]) for t in bunch.target])
    )
    order = np.random.default_rng(7).permutation(frame.height)
    frame = frame[order.tolist()]
    path = directory / "breast_cancer.csv"
    frame.slice(held_out).write_csv(path)
    return path, frame.head(held_out).to_dicts()


def workflow_spec() -> dict[str, Any]:
    """The demo workflow: every built-in step from a dataset to a deployment."""
    return {
        "name": WORKFLOW,
        "description": "armillary quickstart: from a dataset to a deployment",
        "tasks": [
            {"name": "load", "type": "ingest", "params": {"dataset": DATASET}},
            {
                "name": "check",
                "type": "validate",
                "needs": ["load"],
                "params": {
                    "input": "load",
                    "checks": [
                        {"type": "not_null", "column": "mean_radius"},
                        {"type": "in_set", "column": TARGET, "values": ["malignant", "benign"]},
                        {"type": "row_count", "min": 100},
                    ],
                },
            },
            {
                "name": "train",
                "type": "train",
                "needs": ["check"],
                "params": {
                    "input": "check",
                    "target": TARGET,
                    "estimator": "LogisticRegression",
                    "hyperparameters": {"max_iter": 1000},
                    "validation": {"method": "holdout", "test_size": 0.25, "seed": 7},
                },
            },
            {
                "name": "evaluate",
                "type": "evaluate",
                "needs": ["train"],
                "params": {"model": "train", "thresholds": {"accuracy": {"min": 0.85}}},
            },
            {
                "name": "register",
                "type": "register",
                "needs": ["train", "evaluate"],
                "params": {
                    "model": "train",
                    "evaluation": "evaluate",
                    "name": MODEL,
                    "alias": "champion",
                    "description": "trained by armillary quickstart",
                },
            },
            {
                "name": "deploy",
                "type": "deploy",
                "needs": ["register"],
                "params": {
                    "registration": "register",
                    "deployment": DEPLOYMENT,
                    "variant": "champion",
                    "weight": 100,
                },
            },
        ],
    }


def _client(url: str, email: str | None, password: str | None, password_stdin: bool) -> Client:
    """Signed in with ``--email`` (password prompted for or read from stdin), else
    ``ARMILLARY_TOKEN``, else the credentials ``armillary login`` stored for this server."""
    if email:
        secret = read_password(password, password_stdin, f"Password for {email}")
        client = Client(url)
        try:
            client.login(email, secret)
        except ArmillaryError as exc:
            client.close()
            fail(error_message(exc))
        return client
    token = os.environ.get(TOKEN_ENV)
    if token:
        return Client(url, token)
    stored = load_credentials()
    if stored is None or normalize_url(stored.url) != url:
        fail(
            f"Not signed in to {url}: run `armillary login --url {url} --email EMAIL` "
            "or pass --email"
        )
    current = stored

    def keep(tokens: Tokens) -> None:
        nonlocal current
        current = current.with_tokens(tokens)
        save_credentials(current)

    return Client(
        url,
        stored.access_token,
        refresh_token=stored.refresh_token,
        expires_at=stored.expires_at,
        on_tokens=keep,
    )


def _project(client: Client, slug: str | None, screen: Console) -> dict[str, Any]:
    """The project to use: ``slug`` (created when missing), or a new ``quickstart-xxxx``."""
    if slug is None:
        slug = f"quickstart-{secrets.token_hex(2)}"
    body = {"slug": slug, "name": f"Quickstart {slug}", "description": "armillary quickstart"}
    try:
        client.request("POST", "/api/v1/projects", json=body)
        screen.print(f"Created project [bold]{escape(slug)}[/bold]")
        return {"slug": slug, "created": True}
    except ArmillaryError as exc:
        if exc.status != 409:
            raise
        client.request("GET", f"/api/v1/projects/{_segment(slug)}")
        screen.print(f"Using project [bold]{escape(slug)}[/bold]")
        return {"slug": slug, "created": False}


def _apply(client: Client, project: str, screen: Console) -> dict[str, Any]:
    path = f"/api/v1/projects/{_segment(project)}/workflows"
    applied = client.request("POST", path, json=workflow_spec()).json()
    number = applied["version"]["number"]
    state = "applied" if applied["created"] else "unchanged"
    screen.print(f"Workflow [bold]{WORKFLOW}[/bold] {state}: version {number}")
    return {"name": WORKFLOW, "version": number, "created": applied["created"]}


def _predict(client: Client, project: str, row: dict[str, Any], key: str) -> dict[str, Any]:
    """One prediction; retried while the new deployment is not yet served (404/409/503)."""
    path = f"/api/v1/projects/{_segment(project)}/deployments/{DEPLOYMENT}/predict"
    features = {k: v for k, v in row.items() if k != TARGET}
    deadline = time.monotonic() + PREDICT_WAIT_SECONDS
    delay = 0.25
    while True:
        try:
            answer: dict[str, Any] = client.request(
                "POST", path, json={"instances": [features], "key": key}
            ).json()
            return answer
        except ArmillaryError as exc:
            if exc.status not in (404, 409, 503) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


def _probability(answer: dict[str, Any], label: Any) -> str | None:
    probabilities = answer.get("probabilities")
    if not isinstance(probabilities, list) or not probabilities:
        return None
    value = probabilities[0].get(str(label)) if isinstance(probabilities[0], dict) else None
    return f"{value:.3f}" if isinstance(value, int | float) else None


def _send_predictions(
    client: Client, project: str, rows: list[dict[str, Any]], screen: Console
) -> list[dict[str, Any]]:
    """Predict each held-out row, send the true labels as feedback; returns the predictions."""
    sent = []
    for index, row in enumerate(rows):
        answer = _predict(client, project, row, key=f"quickstart-{index}")
        sent.append(
            {
                "prediction_id": answer["prediction_id"],
                "actual": row[TARGET],
                "predicted": answer["predictions"][0],
                "probability": _probability(answer, answer["predictions"][0]),
                "variant": answer.get("variant"),
                "model": answer.get("model", MODEL),
                "model_version": answer.get("model_version"),
            }
        )
    _print_predictions(sent, screen)
    path = f"/api/v1/projects/{_segment(project)}/deployments/{DEPLOYMENT}/feedback"
    feedback = [{"prediction_id": p["prediction_id"], "actual": p["actual"]} for p in sent]
    client.request("POST", path, json={"items": feedback})
    screen.print(f"Sent the true labels of those {len(feedback)} predictions as feedback.")
    return sent


def _print_predictions(sent: list[dict[str, Any]], screen: Console) -> None:
    table = Table(title=f"Predictions from deployment {DEPLOYMENT}")
    for column in ("#", "actual", "predicted", "p", "variant", "model", "prediction id"):
        table.add_column(column)
    for index, item in enumerate(sent):
        table.add_row(
            str(index + 1),
            escape(str(item["actual"])),
            escape(str(item["predicted"])),
            item["probability"] or "-",
            escape(str(item["variant"] or "-")),
            f"{escape(str(item['model']))} v{item['model_version'] or '?'}",
            escape(str(item["prediction_id"])),
        )
    fit_table(table, screen, optional=("variant", "model", "p"), keep_whole=("prediction id",))
    screen.print(table)
    correct = sum(item["predicted"] == item["actual"] for item in sent)
    screen.print(f"{correct} of {len(sent)} right on rows the model never saw.")


def _places(url: str, project: str, job_id: str) -> dict[str, str]:
    base = f"{url}/api/v1/projects/{project}"
    return {
        "project": base,
        "job": f"{url}/api/v1/jobs/{job_id}",
        "models": f"{base}/models/{MODEL}/versions",
        "deployment": f"{base}/deployments/{DEPLOYMENT}",
        "A/B analysis": f"{base}/deployments/{DEPLOYMENT}/analysis",
        "API docs": f"{url}/docs",
        # Not on the API's port: a listener of its own, on the server's machine by default.
        "metrics": "http://127.0.0.1:9464/metrics (ARMILLARY_METRICS_HOST/_PORT)",
    }


def _where_to_look(places: dict[str, str], project: str, job_id: str) -> None:
    console.print("\n[bold]Where to look[/bold] (send your token as Authorization: Bearer):")
    for name, where in places.items():
        console.print(f"  {name + ':':<14} {escape(where)}")
    console.print(
        f"  {'CLI:':<14} armillary jobs show {job_id} · "
        f"armillary models show -p {project} -m {MODEL}"
    )


def quickstart(
    url: Annotated[
        str, typer.Option(envvar=URL_ENV, help="The running platform's URL")
    ] = "http://127.0.0.1:8000",
    email: Annotated[
        str | None,
        typer.Option(help="Sign in as (default: the credentials of `armillary login`)"),
    ] = None,
    password: Annotated[
        str | None, typer.Option(help="Prompted for when --email is given without it")
    ] = None,
    password_stdin: PasswordStdinOption = False,
    project: Annotated[
        str | None,
        typer.Option("--project", "-p", help="Project slug (default: a new quickstart-xxxx)"),
    ] = None,
    predictions: Annotated[int, typer.Option(min=1, max=HELD_OUT, help="Predictions to send")] = 5,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Create a demo project, train and deploy a model on real data, and send predictions.
    With --output json|yaml the progress goes to stderr and stdout gets what was made."""
    url = normalize_url(url)
    client = _client(url, email, password, password_stdin)
    # Scripts read the result from stdout; what happens meanwhile goes to stderr.
    screen = console if output is OutputFormat.TABLE else err
    try:
        with client, TemporaryDirectory(prefix="armillary-quickstart-") as tmp:
            made = _project(client, project, screen)
            slug = made["slug"]
            csv, held_out = demo_data(Path(tmp))
            uploaded = client.datasets.upload(slug, DATASET, csv, format="csv")
            state = "uploaded" if uploaded.created else "already there"
            screen.print(
                f"Dataset [bold]{DATASET}[/bold] version {uploaded.version['number']} {state} "
                "(scikit-learn's breast-cancer data)"
            )
            result: dict[str, Any] = {
                "project": made,
                "dataset": {
                    "name": DATASET,
                    "version": uploaded.version["number"],
                    "uploaded": uploaded.created,
                },
                "workflow": _apply(client, slug, screen),
            }
            job = client.jobs.run(slug, WORKFLOW, trigger="cli")
            screen.print(f"Started job {job['id']}")
            job = follow(client, job, screen, err)
            screen.print(summary(job))
            result["job"] = {"id": job["id"], "status": job["status"]}
            if job["status"] != "succeeded":
                result["job"]["errors"] = {
                    t["name"]: t["error"] for t in job["tasks"] if t["error"]
                }
                if not print_data(output, result):
                    for name, error in result["job"]["errors"].items():
                        console.print(f"[red]{escape(name)}:[/red] {escape(error)}")
                raise typer.Exit(1)
            result["predictions"] = _send_predictions(client, slug, held_out[:predictions], screen)
            result["where_to_look"] = _places(url, slug, job["id"])
            if not print_data(output, result):
                _where_to_look(result["where_to_look"], slug, job["id"])
    except ArmillaryError as exc:
        fail(error_message(exc))
