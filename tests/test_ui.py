"""What a person sees: after `make demo`, headless Chromium opens the demo's Prefect UI and reads
the pages a newcomer looks at first. The expected values come from the demo's own store and
automations, not from the UI.

Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them when missing). Without
them the test fails and says how to install them. On a failure the page's screenshot is saved and
its path is added to the failure report.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from deployments.automations import build_automations
from deployments.demo import CHAT_BLOCK, DEMO_JOBS, DemoRun, demo

IDLE = "idle-resources"
pytestmark = pytest.mark.slow
LATEST = "//a[contains(@href, '/artifacts/artifact/')]"
# A page of the UI on a busy two-core machine can take a while: its data arrives after the app.
PAGE_SECONDS = 60
INSTALL_HINT = ("the browser test needs headless Chromium and its driver: "
                "`apt-get install -y chromium chromium-driver` (Debian/Ubuntu; `.ci/run` does this)")


@pytest.fixture(scope="module")
def demo_run() -> Iterator[DemoRun]:
    """One `make demo` run for this module, every job in it; its services stay up meanwhile.
    Its progress lines are printed, so a failure's report shows them."""
    with demo(seed_scale=1, out=print) as run:
        yield run


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if missing := [name for name, path in (("chromium", chromium), ("chromedriver", driver)) if not path]:
        pytest.fail(f"{INSTALL_HINT}; not found on PATH: {', '.join(missing)}")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1600,1100"):
        options.add_argument(arg)
    chrome = webdriver.Chrome(options=options, service=Service(driver))
    try:
        yield chrome
    finally:
        chrome.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


@contextmanager
def page(browser: webdriver.Chrome, url: str, shots: Path, name: str) -> Iterator[webdriver.Chrome]:
    """Open `url`; if the checks inside fail, keep a screenshot and name it in the failure."""
    browser.get(url)
    try:
        yield browser
    except Exception as exc:
        path = shots / f"{name}.png"
        browser.save_screenshot(str(path))
        exc.add_note(f"screenshot of {browser.current_url}: {path}\npage text:\n{body(browser)[:3000]}")
        raise


def body(browser: webdriver.Chrome) -> str:
    return browser.find_element(By.TAG_NAME, "body").text


def run_states(browser: webdriver.Chrome) -> dict[str, list[str]]:
    """The runs page's cards, one per flow run (flow name, run name, state, start, ...), by flow;
    cards still rendering (no text yet) are left out."""
    cards = browser.find_elements(By.XPATH, "//li[.//nav][.//a[contains(@href, '/runs/flow-run/')]]")
    return {lines[0]: lines for lines in (c.text.splitlines() for c in cards) if lines}


def automation_names(browser: webdriver.Chrome) -> list[str]:
    return sorted({a.text for a in browser.find_elements(By.XPATH, "//a[starts-with(., 'dataplatform-ops:')]")})


def open_latest_version(browser: webdriver.Chrome) -> None:
    """On an artifact key's page, click its latest version, as a person would."""
    wait_for(browser, "the artifact's latest version", lambda b: b.find_elements(By.XPATH, LATEST))
    browser.find_element(By.XPATH, LATEST).click()


def wait_for(browser: webdriver.Chrome, what: str, condition) -> None:
    WebDriverWait(browser, PAGE_SECONDS, poll_frequency=0.5,  # the app re-renders as data arrives
                  ignored_exceptions=(StaleElementReferenceException,)).until(condition, f"waited for {what}")


def test_demo_ui_shows_runs_findings_summary_and_automations(browser, demo_run, shots):
    results = {r.job: r.status for r in demo_run.summary.results if r.status != "skipped"}
    assert results == dict.fromkeys(DEMO_JOBS, "Completed")  # the rest are skipped with a note
    ui = demo_run.server.ui_url

    # The address the demo prints: the UI loads and reaches this server's API.
    with page(browser, ui, shots, "home"):
        wait_for(browser, "the dashboard", lambda b: re.search(r"Flow Runs|Can't connect", body(b)))
        assert "Can't connect to Server API" not in body(browser)
        assert browser.current_url.startswith(f"{ui}/v2/")  # Prefect 3.9's default UI
        wait_for(browser, "the dashboard's flow runs", lambda b: "Flow Runs" in body(b))

    # Runs: one card per job's run, each Completed.
    with page(browser, f"{ui}/v2/runs", shots, "runs"):
        wait_for(browser, "a run of every job", lambda b: set(run_states(b)) >= set(DEMO_JOBS))
        states = run_states(browser)
        assert set(states) == set(DEMO_JOBS)
        assert {job: "Completed" in lines for job, lines in states.items()} == dict.fromkeys(DEMO_JOBS, True)

    # The idle-resources findings table, opened from its key's page: the most expensive first.
    open_findings = demo_run.store.findings_of(IDLE, status="open")
    top_usd = max(f["monthly_cost_usd"] for f in open_findings)
    with page(browser, f"{ui}/v2/artifacts/key/{IDLE}-findings", shots, "findings"):
        open_latest_version(browser)
        wait_for(browser, "the findings table", lambda b: b.find_elements(By.CSS_SELECTOR, "table tbody tr"))
        header = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "table thead th")]
        rows = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
                for tr in browser.find_elements(By.CSS_SELECTOR, "table tbody tr")]
        assert header[:6] == ["severity", "kind", "resource", "scope", "monthly_usd", "reason"]
        usd = [float(r[header.index("monthly_usd")] or 0) for r in rows]  # a finding without a price: blank
        assert usd[0] == pytest.approx(top_usd) and usd == sorted(usd, reverse=True)
        costliest = {f["resource_id"] for f in open_findings if f["monthly_cost_usd"] == top_usd}
        assert rows[0][header.index("resource")] in costliest
        assert f"{IDLE}: {len(open_findings)} findings" in body(browser)

    # Its summary: the total $/month, the costliest items and the breakdowns, rendered.
    total = sum(f["monthly_cost_usd"] or 0 for f in open_findings)
    with page(browser, f"{ui}/v2/artifacts/key/{IDLE}-summary", shots, "summary"):
        open_latest_version(browser)
        wait_for(browser, "the summary's heading", lambda b: b.find_elements(By.XPATH, f"//h1[.='{IDLE}']"))
        text = body(browser)
        assert f"{len(open_findings)} findings, ${total:,.2f}/mo in total" in text
        headings = [h.text for h in browser.find_elements(By.TAG_NAME, "h2")]
        assert {"Costliest 5", "By kind", "By account/region"} <= set(headings)
        assert len(re.findall(r"To do: ", text)) == 5
        assert len(browser.find_elements(By.CSS_SELECTOR, "table")) == 2

    # Automations: the collection's, by name.
    expected = sorted(a.name for a in build_automations(chat_block=CHAT_BLOCK))
    with page(browser, f"{ui}/v2/automations", shots, "automations"):
        wait_for(browser, "the automations", lambda b: automation_names(b) == expected)
        assert f"{len(expected)} automations" in body(browser)


def test_a_job_run_form_offers_the_saved_blocks(browser, demo_run, shots):
    """A job's run form (Deployments > job > Run) offers the saved AWS credentials blocks to pick
    from; the run it submits carries a reference to the picked block, which Prefect resolves to
    that block before the job starts. Prefect 3.9's schema check refuses a picked block whose
    fields are all optional (the reference also matches the block's own schema: "valid under
    each of"), so the run is submitted with "Enforce Parameter Schema" off, as README says."""
    from prefect.client.orchestration import get_client
    from prefect_aws import AwsCredentials

    from flows.registry import JOBS

    AwsCredentials(region_name="ap-northeast-2").save("aws-seoul", overwrite=True)
    fl = JOBS[IDLE]
    deployment_id = fl.to_deployment(name="form-check").apply()
    with get_client(sync_client=True) as client:
        saved = sorted(d.name for d in client.read_block_documents(include_secrets=False)
                       if d.block_type and d.block_type.slug == "aws-credentials" and d.name)
    assert {"aws", "aws-seoul"} <= set(saved)

    ui = demo_run.server.ui_url
    with page(browser, f"{ui}/v2/deployments/deployment/{deployment_id}/run", shots, "run-form"):
        wait_for(browser, "the parameters", lambda b: "aws_credentials" in body(b))
        # The parameter takes a block or a name: choose "AwsCredentials", then open the picker.
        toggle = "//*[normalize-space(text())='AwsCredentials']"
        wait_for(browser, "the block/name toggle", lambda b: b.find_elements(By.XPATH, toggle))
        browser.find_element(By.XPATH, toggle).click()
        picker = "//button[contains(., 'Select a block')]"
        wait_for(browser, "the block picker", lambda b: b.find_elements(By.XPATH, picker))
        browser.find_element(By.XPATH, picker).click()
        wait_for(browser, "the saved blocks", lambda b: len(b.find_elements(By.XPATH, "//*[@role='option']")) > len(saved))
        options = [o.text for o in browser.find_elements(By.XPATH, "//*[@role='option']")]
        assert options == [*saved, "Create new block"]
        next(o for o in browser.find_elements(By.XPATH, "//*[@role='option']") if o.text == "aws-seoul").click()
        wait_for(browser, "the choice", lambda b: not b.find_elements(By.XPATH, picker))
        browser.find_element(
            By.XPATH, "//*[normalize-space(text())='Enforce Parameter Schema']/following::*[@role='switch'][1]").click()
        browser.find_element(By.XPATH, "//button[normalize-space(.)='Submit']").click()
        wait_for(browser, "the deployment's runs", lambda b: "tab=Runs" in b.current_url)

    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        [run] = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))
        client.delete_flow_run(run.id)  # it has no worker; the demo's runs stay the only ones
    seoul = AwsCredentials.load("aws-seoul")
    assert run.parameters["aws_credentials"] == {"$ref": {"block_document_id": str(seoul._block_document_id)}}
    picked = fl.validate_parameters(run.parameters)["aws_credentials"]
    assert isinstance(picked, AwsCredentials) and picked.region_name == "ap-northeast-2"
