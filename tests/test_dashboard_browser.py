"""The dashboard in a real browser (headless Debian Chromium through Playwright), against a worker that
keeps receiving simulated events: simulator (paced, from now) -> collector -> Kafka -> worker -> API.

It waits for data, checks that KPI numbers are non-zero and change between refreshes, changes the time
range and the namespace filters (the URL follows), drills down into a user and saves screenshots into the test's temp dir; with
PIONEER_UPDATE_SCREENSHOTS=1 also into docs/screenshots/ (the ones the README shows).

Never `playwright install`: the system's Chromium is used. Skipped when it is absent, failed in CI.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dashboard import model
from pioneer_base.kafka_local import free_port
from streams.topics import TopicSettings
from tests.helpers import CollectorThread, WorkerProcess, settings_for, wait_for_port, worker_env

CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync",
]  # fmt: skip
SCREENSHOTS = Path(__file__).parent.parent / "docs" / "screenshots"
USERS = 6


def missing() -> str | None:
    """Why the browser test cannot run here, or None."""
    if shutil.which("chromium") is None:
        return "Chromium is not installed (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401, PLC0415
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    return None


MISSING = missing()
pytestmark = [pytest.mark.kafka]
if MISSING and not os.environ.get("CI"):
    pytestmark.append(pytest.mark.skip(reason=MISSING))  # skipped before any broker or worker starts


@pytest.fixture
def chromium() -> str:
    if MISSING:  # only in CI, where the browser test must run
        pytest.fail(f"the browser test must run in CI: {MISSING}")
    path = shutil.which("chromium")
    assert path is not None
    return path


def simulate(out_dir: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pioneer_telemetry",
        "simulate",
        "--users",
        str(USERS),
        "--out-dir",
        str(out_dir),
        *args,
    ]


@pytest.fixture
def live_worker(kafka_broker: str, topics: TopicSettings, tmp_path: Path) -> Iterator[WorkerProcess]:
    """The last 100 minutes (unpaced) plus users working now (paced), collected into a worker."""
    history, live = tmp_path / "history", tmp_path / "live"
    start = (datetime.now(UTC) - timedelta(minutes=101)).strftime("%Y-%m-%dT%H:%M:%SZ")
    subprocess.run(simulate(history, "--seed", "3", "--start", start, "--duration", str(100 * 60)),
                   check=True, capture_output=True)  # fmt: skip
    # slower than the users' own pace (~1.2 events/s each): simulated time stays behind the clock, so
    # new events land in the current window and the numbers change between refreshes
    paced = subprocess.Popen(simulate(live, "--seed", "5", "--rate", str(0.6 * USERS)),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    collector_settings = settings_for(live, tmp_path)
    collector_settings.paths.append(str(history / "*.log"))
    collector = CollectorThread(collector_settings, kafka_broker, topics)
    worker = WorkerProcess(
        worker_env(kafka_broker, topics, f"pt-browser-{uuid.uuid4().hex[:8]}"),
        tmp_path / "w",
        tmp_path / "w.log",
    ).start()
    try:
        yield worker
    finally:
        paced.terminate()  # not SIGINT: a shell that starts CI in the background makes children ignore it
        try:
            paced.wait(timeout=30)
        finally:  # whatever happened above, leave no process behind
            paced.kill()
            collector.stop()
            worker.kill(signal.SIGTERM)


@pytest.fixture
def dashboard_url(live_worker: WorkerProcess, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIONEER_")}
    command = [sys.executable, "-m", "pioneer_telemetry", "dashboard", "--port", str(port),
               "--api-url", live_worker.url, "--refresh-s", "600"]  # fmt: skip
    with (tmp_path / "dashboard.log").open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, timeout_s=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def fit_and_shoot(page: Any, path: Path) -> None:
    """Streamlit scrolls inside its main block, so the viewport grows to the content before the shot."""
    height = page.evaluate("document.querySelector('[data-testid=\"stMainBlockContainer\"]').scrollHeight")
    page.set_viewport_size({"width": 1440, "height": min(int(height) + 120, 4000)})
    time.sleep(1.5)  # charts re-layout
    page.screenshot(path=str(path))


def show_failure(page: Any, tmp_path: Path) -> None:
    """What the page showed when a step failed, and the dashboard's log: printed for the test report."""
    page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
    print(f"page at {page.url}:\n{page.inner_text('body')[:4000]}")
    print(f"dashboard log (end):\n{(tmp_path / 'dashboard.log').read_text(errors='replace')[-4000:]}")


def choose_namespace(page: Any, namespace: str) -> None:
    """Pick a namespace in the sidebar's filter, as a user does; the URL follows."""
    page.get_by_test_id("stSelectbox").filter(has_text="Namespace").click()
    page.get_by_role("option", name=namespace, exact=True).click()
    page.wait_for_url(f"**/?namespace={namespace}", timeout=15_000)


def caught_up(worker: WorkerProcess) -> bool:
    """The last 15 minutes, as the page asks for them, hold events, and little waits in Kafka."""
    health = worker.get("health")
    span = model.relative_span("15m", int(time.time() * 1000), model.Held.from_health(health))
    recent = worker.get("overview", **span.params())["current"]["events"]
    return recent > 0 and health["lag"] < 1000


def test_the_dashboard_in_a_browser(
    chromium: str, live_worker: WorkerProcess, dashboard_url: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright  # noqa: PLC0415

    live_worker.wait_until(caught_up, what="the history counted and recent events arriving")
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1800})
            page.goto(f"{dashboard_url}/?range=15m")

            def tile(label: str) -> Any:
                return (
                    page.locator('[data-testid="stMetric"]')
                    .filter(has_text=label)
                    .first.locator('[data-testid="stMetricValue"]')
                )

            expect(tile("Events/min")).to_be_visible(timeout=60_000)
            first = {label: tile(label).inner_text() for label in ("Active users", "Events/min")}
            assert int(first["Active users"]) > 0, first
            assert float(first["Events/min"].replace(",", "")) > 0, first
            # no timed refresh in this test (600 s): the page redraws because the API's /changes said
            # new events were counted, without a reload
            expect(tile("Events/min")).not_to_have_text(first["Events/min"], timeout=30_000)
            expect(page.get_by_text("Live", exact=True)).to_be_visible(timeout=30_000)

            page.get_by_role("radio", name="24h").click()
            page.wait_for_url("**/?range=24h", timeout=15_000)
            expect(page.get_by_text("per hour", exact=False).first).to_be_visible(timeout=15_000)
            page.get_by_role("radio", name="1h").click()  # the default: it leaves the URL
            page.wait_for_function("() => !location.search.includes('range=')", timeout=15_000)
            expect(page.get_by_text("per minute", exact=False).first).to_be_visible(timeout=15_000)
            choose_namespace(page, "dev")  # the simulated pods' namespace
            expect(page.get_by_text("namespace dev", exact=False).first).to_be_visible(timeout=15_000)
            expect(page.get_by_role("heading", name="Top users")).to_be_visible(timeout=15_000)
            assert int(tile("Active users").inner_text()) > 0
            time.sleep(2)
            fit_and_shoot(page, shots / "overview.png")

            # drill down: select the busiest user's row in Top users (a canvas grid: click its row marker)
            grid = (
                page.get_by_role("heading", name="Top users")
                .locator("xpath=ancestor::div[@data-testid='stVerticalBlock'][1]")
                .locator('[data-testid="stDataFrame"]')
            )
            box = grid.bounding_box()
            assert box is not None
            page.mouse.click(box["x"] + 18, box["y"] + 35 + 17)  # header row, then the first row's marker
            page.wait_for_url("**/user?**", timeout=15_000)
            assert "user=" in page.url
            page.wait_for_url("**namespace=dev**", timeout=15_000)  # the filters travel along
            expect(tile("Executions")).to_be_visible(timeout=30_000)
            assert int(tile("Events").inner_text().replace(",", "")) > 0
            expect(page.get_by_role("heading", name="Notebooks")).to_be_visible()
            time.sleep(2)
            fit_and_shoot(page, shots / "user.png")
        except Exception:
            show_failure(page, tmp_path)
            raise
        finally:
            browser.close()
    assert (shots / "overview.png").stat().st_size > 50_000
    if os.environ.get("PIONEER_UPDATE_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for name in ("overview.png", "user.png"):
            shutil.copyfile(shots / name, SCREENSHOTS / name)
