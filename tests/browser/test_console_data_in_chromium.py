"""Console slice 2a in Chromium: upload a CSV through the file input and see its profile,
paste a pipeline's YAML into a form, watch its DAG turn green live, follow a task's log,
diff two workflow versions; and axe-core (vendored under tests/browser/vendor) checks every
page the journey reaches, slice 1's included, for serious or critical violations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.browser import test_console_in_chromium as base

pytestmark = base.pytestmark

# The platform, browser and page fixtures of slice 1's browser test, shared by name.
platform = base.platform
chromium = base.chromium
open_page = base.open_page

AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
CSV = "city,temp,label\nOslo,3.5,a\nRome,18.25,b\nLima,19.0,a\nCairo,25.5,a\n"
PIPELINE_YAML = """\
name: etl
tasks:
  - name: extract
    type: python
    params:
      source: |
        import time

        def main():
            print("extracting rows", flush=True)
            time.sleep(3)
            print("extracted 4 rows", flush=True)
            return {"rows": 4}
  - name: clean
    type: noop
    needs: [extract]
  - name: report
    type: noop
    needs: [extract]
  - name: publish
    type: noop
    needs: [clean, report]
"""
# What axe's run returns to the test: only the violations that block people.
AXE_RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations
    .filter(v => v.impact === "serious" || v.impact === "critical")
    .map(v => v.id + " (" + v.impact + "): " + v.help + " at " +
      v.nodes.slice(0, 3).map(n => n.target.join(" ")).join(", "));
}"""


def accessible(watched: base.Watched, name: str) -> None:
    """Screenshot the page, then fail on any serious or critical axe violation."""
    watched.shot(name)
    found = watched.page.evaluate(AXE_RUN)
    assert found == [], f"{watched.page.url}: {found}"


def fits_a_phone(page: Any) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{page.url} is wider than a phone by {overflow}px"
    page.set_viewport_size({"width": 1280, "height": 900})


def test_data_and_pipelines_journey_is_accessible(
    platform: base.Platform, open_page: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    url = platform.base_url
    scientist = platform.user("data_scientist", "Ada")
    token = scientist["token"]
    created = platform.http.post(
        "/api/v1/projects", json={"slug": "atlas", "name": "Atlas"}, headers=base.auth(token)
    )
    assert created.status_code == 201, created.text
    watched = open_page()
    page = watched.page
    page.context.add_init_script(path=str(AXE))  # by the driver: the page's CSP allows it

    page.goto(f"{url}/ui/login")
    accessible(watched, "a11y-01-sign-in")
    base.sign_in_by_keyboard(watched, url, scientist["email"], scientist["password"])
    accessible(watched, "a11y-02-projects")
    page.goto(f"{url}/ui/projects/atlas")
    accessible(watched, "a11y-03-project")

    # A dataset made through its form, then a CSV sent through the file input.
    base.tab(page, "Datasets").click()
    page.wait_for_url(f"{url}/ui/projects/atlas/datasets")
    accessible(watched, "data-01-datasets")
    page.get_by_label("Name", exact=True).fill("cities")
    page.get_by_role("button", name="Create dataset").click()
    page.wait_for_url(f"{url}/ui/projects/atlas/datasets/cities")
    csv = tmp_path / "cities.csv"
    csv.write_text(CSV)
    page.get_by_label("File (CSV, Parquet or JSON Lines)").set_input_files(str(csv))
    page.get_by_role("button", name="Upload").click()
    page.wait_for_url(f"{url}/ui/projects/atlas/datasets/cities?version=1")
    if page.locator("article[data-column=temp] svg.bars").count() == 0:
        page.reload()  # profiled after the upload answered: look again once
    expect(page.locator("article[data-column=temp] svg.bars rect")).to_have_count(10)
    expect(page.locator("article[data-column=label] svg.bars rect")).to_have_count(2)
    expect(page.locator("#schema")).to_contain_text("Float64")
    assert page.get_by_role("link", name="Download v1").count() == 1
    accessible(watched, "data-02-dataset-profile")
    fits_a_phone(page)

    # A pipeline pasted as YAML into the workflows page's form, then run (through the API).
    base.tab(page, "Workflows").click()
    page.get_by_label("Spec (YAML)").fill(PIPELINE_YAML)
    page.get_by_role("button", name="Apply spec").click()
    page.wait_for_url(f"{url}/ui/projects/atlas/workflows/etl")
    expect(page.locator("svg.dag g.dag-node")).to_have_count(4)
    job = platform.http.post(
        "/api/v1/projects/atlas/workflows/etl/jobs", json={}, headers=base.auth(token)
    ).json()
    page.goto(f"{url}/ui/projects/atlas/jobs/{job['id']}")
    nodes = page.locator("svg.dag g.dag-node")
    expect(nodes).to_have_count(4)
    assert page.locator("g.dag-node[data-node=publish]").get_attribute("data-state") != (
        "succeeded"
    ), "the job ended before its page opened"
    watched.shot("data-03-job-dag-running")
    page.evaluate("window.__sameDocument = true")
    # Generous: on a loaded two-core CI machine the python task's sandbox alone took 30 s.
    expect(page.locator("svg.dag g.dag-succeeded")).to_have_count(4, timeout=150_000)
    assert page.evaluate("window.__sameDocument") is True  # redrawn live, not reloaded
    expect(page.locator("#job-live")).to_contain_text("Outputs and artifacts")
    accessible(watched, "data-04-job-dag-green")
    fits_a_phone(page)

    # A node opens its task's log, which the page follows to its end.
    page.locator("svg.dag a[aria-label^=extract]").click()
    log = page.locator("pre#log-text")
    expect(log).to_contain_text("extracted 4 rows")
    expect(log).to_have_attribute("data-log-done", "true")
    assert log.inner_text().count("extracting rows") == 1  # appended once, not re-read
    accessible(watched, "data-05-task-log")

    # A second version of the pipeline, its graph and its diff with the first.
    second = PIPELINE_YAML.replace("needs: [clean, report]", "needs: [clean]")
    assert (
        platform.http.post(
            "/api/v1/projects/atlas/workflows",
            content=second,
            headers={**base.auth(token), "Content-Type": "application/yaml"},
        ).status_code
        == 201
    )
    base.tab(page, "Workflows").click()
    accessible(watched, "data-06-workflows-form")
    page.get_by_role("link", name="etl").click()
    expect(page.locator("svg.dag .dag-edge")).to_have_count(3)  # v2: publish after clean only
    accessible(watched, "data-07-workflow-graph")
    page.get_by_role("button", name="Show diff").click()
    expect(page.locator("pre.diff .diff-del").last).to_contain_text('"report"')
    accessible(watched, "data-08-workflow-diff")

    base.tab(page, "Jobs").click()
    accessible(watched, "a11y-08-jobs")
    base.tab(page, "Models").click()
    accessible(watched, "a11y-09-models")
    page.goto(f"{url}/ui/projects/no-such-project")
    accessible(watched, "a11y-10-not-found")
    watched.assert_clean()


@pytest.fixture(autouse=True, scope="module")
def _keep_screenshots() -> Any:
    yield
    base.teardown_module()
