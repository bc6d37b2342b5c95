"""A term of history: a simulated year of a course (compressed in time: replayed as fast as the pipeline
goes) counted by the day exactly, per user and per notebook; the term range in a real browser; and a
backfill of older logs after newer data, into the windows that still hold each event, exactly once."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pandas as pd
import pytest
from aiokafka import AIOKafkaProducer

from pioneer_base.kafka_local import free_port
from simulator.settings import SimulatorSettings
from streams.export import ExportSettings, run_export
from streams.topics import TopicSettings, ensure_topics, topic_specs
from tests.clock import epoch_ms, iso, recent_hour
from tests.helpers import (
    CollectorThread,
    WorkerProcess,
    consume,
    consume_envelopes,
    kafka_settings,
    settings_for,
    unique_topics,
    wait_for_port,
    worker_env,
)
from tests.simulated import Fact, facts_of
from tests.test_dashboard_browser import CHROMIUM_ARGS, SCREENSHOTS

pytestmark = pytest.mark.kafka

DAY = 86_400_000
HOUR = 3_600_000
YEAR_USERS, YEAR_SEED, YEAR_SESSIONS = 4, 17, 0.25  # ~30 working blocks per user and year


def day_of(ms: int) -> int:
    return ms - ms % DAY  # the worker's default day windows are days of UTC


def simulate_files(out_dir: Path, settings: SimulatorSettings) -> list[Fact]:
    """The simulation's pod log files (CRI, kubelet names) written by `pioneer-telemetry simulate`, and its
    events from the model."""
    assert settings.start is not None
    arguments = ["--users", str(settings.users), "--seed", str(settings.seed), "--start", iso(settings.start),
                 "--duration", str(settings.duration), "--rate", "0", "--out-dir", str(out_dir)]  # fmt: skip
    if settings.sessions_per_week:
        arguments += ["--sessions-per-week", str(settings.sessions_per_week), "--office-hours"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIONEER_")}
    subprocess.run([sys.executable, "-m", "pioneer_telemetry", "simulate", *arguments], env=env, check=True,
                   capture_output=True)  # fmt: skip
    return facts_of(settings)


def collect(kafka_broker: str, topics: TopicSettings, log_dir: Path, state: Path) -> None:
    """The collector forwards the files to the raw topic, then stops."""
    expected = sum(1 for path in log_dir.glob("*.log") for line in path.open() if "eventDetail" in line)
    collector = CollectorThread(settings_for(log_dir, state), kafka_broker, topics)
    try:
        consume_envelopes(kafka_broker, topics.raw, expected=expected, timeout_s=180)
    finally:
        collector.stop()


def by_day(facts: Iterable[Fact]) -> dict[int, int]:
    return dict(Counter(day_of(f.minute_ms) for f in facts))


def points_by_start(answer: dict[str, Any]) -> dict[int, int]:
    return {p["start_ms"]: p["events"] for p in answer["points"] if p["events"]}


@dataclass(frozen=True)
class Year:
    worker: WorkerProcess
    facts: list[Fact]
    span: dict[str, int]
    topics: TopicSettings


@pytest.fixture(scope="module")
def year(kafka_broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Year]:
    """A course's year, ending this hour: four students, a working block every four weeks or so."""
    base = tmp_path_factory.mktemp("year")
    start = recent_hour(0) - timedelta(days=365)
    settings = SimulatorSettings(users=YEAR_USERS, seed=YEAR_SEED, start=start, duration=365 * 86_400 - 3600,
                                 sessions_per_week=YEAR_SESSIONS, office_hours=True)  # fmt: skip
    facts = simulate_files(base / "logs", settings)
    topics = unique(kafka_broker, "y")
    worker = WorkerProcess(
        worker_env(kafka_broker, topics, f"pt-year-{uuid.uuid4().hex[:8]}"), base / "w", base / "w.log"
    ).start()
    span = {"from_ms": epoch_ms(start), "to_ms": day_of(epoch_ms(start)) + 366 * DAY}
    try:
        collect(kafka_broker, topics, base / "logs", base)
        worker.wait_until(
            lambda w: w.get("overview", **span)["current"]["events"] == len(facts),
            timeout_s=300,
            what="the year counted",
        )
        yield Year(worker, facts, span, topics)
    finally:
        worker.kill(signal.SIGTERM)


def unique(kafka_broker: str, prefix: str) -> TopicSettings:
    """The pipeline's topics under fresh names."""
    topics = unique_topics(f"{prefix}{uuid.uuid4().hex[:8]}")
    asyncio.run(ensure_topics(kafka_settings(kafka_broker), topic_specs(topics)))
    return topics


def test_a_year_by_the_day_equals_the_truth_per_user_and_notebook(year: Year) -> None:
    worker, facts, span = year.worker, year.facts, year.span
    assert len(facts) > 50_000  # a real year, not a token one
    answer = worker.get("timeseries", **span)
    assert answer["resolution"] == "day"  # a year: the finest windows held for it
    assert points_by_start(answer) == by_day(facts)
    overview = worker.get("overview", **span)["current"]
    assert overview["active_users"] == YEAR_USERS
    assert overview["events_by_name"] == dict(sorted(Counter(f.name for f in facts).items()))
    for user in sorted({f.user for f in facts}):
        detail = worker.get(f"users/{user}", **span)
        mine = [f for f in facts if f.user == user]
        assert (detail["events"], detail["active_days"]) == (len(mine), len(by_day(mine))), user
        assert {p["start_ms"]: p["events"] for p in detail["timeline"] if p["events"]} == by_day(mine), user
        notebooks = defaultdict(list)
        for fact in mine:
            notebooks[fact.path].append(fact)
        assert {nb["notebook"]: nb["events"] for nb in detail["notebooks"]} == {
            path: len(events) for path, events in notebooks.items()
        }, user
    path = Counter(f.path for f in facts).most_common(1)[0][0]
    notebook = worker.get("notebooks", path=path, **span)
    assert points_by_start({"points": notebook["timeline"]}) == by_day(f for f in facts if f.path == path)


def test_the_term_range_renders_by_the_day_in_a_browser(year: Year, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright  # noqa: PLC0415

    worker, facts = year.worker, year.facts
    chromium = shutil.which("chromium")
    assert chromium, "the term page's check needs Debian's chromium"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIONEER_")}
    dashboard = subprocess.Popen(
        [sys.executable, "-m", "pioneer_telemetry", "dashboard", "--api-url", worker.url, "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    now = datetime.now(UTC)
    first = (now - timedelta(days=150)).strftime("%Y-%m")
    last = now.strftime("%Y-%m")
    term_facts = [
        f for f in facts if datetime.fromtimestamp(f.minute_ms / 1000, UTC).strftime("%Y-%m") >= first
    ]
    try:
        wait_for_port(port, timeout_s=60)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1440, "height": 1700}, timezone_id="UTC")
                page.goto(f"http://127.0.0.1:{port}/?range=term&term_from={first}&term_to={last}")
                tile = page.locator('[data-testid="stMetric"]').filter(has_text="Active users").first
                expect(tile).to_be_visible(timeout=60_000)
                expect(page.get_by_text("per day", exact=False).first).to_be_visible(timeout=30_000)
                expect(page.get_by_role("heading", name="Events by name")).to_be_visible(timeout=30_000)
                expect(
                    page.locator('[data-testid="stMetric"]').filter(has_text="Events/day").first
                ).to_be_visible()
                value = tile.locator('[data-testid="stMetricValue"]').inner_text()
                assert value == str(len({f.user for f in term_facts}))
                page.wait_for_timeout(2000)  # charts lay out
                page.screenshot(path=str(tmp_path / "term.png"), full_page=True)
            finally:
                browser.close()
    finally:
        dashboard.send_signal(signal.SIGTERM)
        dashboard.wait(timeout=30)
    assert (tmp_path / "term.png").stat().st_size > 50_000
    if os.environ.get("PIONEER_UPDATE_SCREENSHOTS"):
        shutil.copyfile(tmp_path / "term.png", SCREENSHOTS / "term.png")


EXPORT_DOC = Path(__file__).resolve().parents[1] / "docs" / "export.md"


def monday(ms: int) -> int:
    day = day_of(ms)
    return day - datetime.fromtimestamp(day / 1000, UTC).weekday() * DAY


def test_the_export_to_parquet_equals_the_truth_once_and_appends_only_what_is_new(
    year: Year, kafka_broker: str, tmp_path: Path
) -> None:
    facts, topics = year.facts, year.topics
    published = consume(kafka_broker, topics.events, expected=len(facts), timeout_s=120)
    assert len(published) == len(facts)

    async def replay(events: list[dict[str, Any]]) -> None:  # what a worker's crash leaves on the topic
        producer = AIOKafkaProducer(bootstrap_servers=kafka_broker)
        await producer.start()
        try:
            for event in events:
                await producer.send(
                    topics.events, orjson.dumps(event), key=(event["session_id"] or "").encode()
                )
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(replay(published[-300:]))
    out = tmp_path / "export"
    settings = ExportSettings(out_dir=out, topic=topics.events, chunk_messages=40_000)
    first = run_export(settings, kafka_settings(kafka_broker), lambda done, total: None)
    assert (first.exported, first.duplicates) == (len(facts), 300)

    files = f"{out}/**/*.parquet"
    rows = duckdb.sql(f"SELECT date, \"user\", count(DISTINCT event_id) AS n, count(*) AS c "
                      f"FROM read_parquet('{files}', hive_partitioning = true) GROUP BY ALL").fetchall()  # fmt: skip
    assert all(n == c for _, _, n, c in rows)  # no event twice
    per_day = Counter[int]()
    for day, _, n, _ in rows:
        per_day[int(datetime.combine(day, datetime.min.time(), UTC).timestamp() * 1000)] += n
    assert dict(per_day) == by_day(facts)
    per_user = Counter[str]()
    for _, user, n, _ in rows:
        per_user[user] += n
    assert per_user == Counter(f.user for f in facts)

    weekly, errors = re.findall(r"```sql\n(.*?)```", EXPORT_DOC.read_text(), re.DOTALL)
    shown = duckdb.sql(weekly.replace("EXPORT", str(out))).fetchall()
    assert {(user, int(week.timestamp() * 1000)): n for user, week, n in shown} == Counter(
        (f.user, monday(f.minute_ms)) for f in facts
    )
    executions = Counter(f.path for f in facts if f.name == "CellExecuteEvent")
    failures = Counter(f.path for f in facts if f.error)
    shown = duckdb.sql(errors.replace("EXPORT", str(out))).fetchall()
    assert {path: (e, f) for path, e, f, _ in shown} == {p: (n, failures[p]) for p, n in executions.items()}

    (snippet,) = re.findall(r"```python\n(.*?)```", EXPORT_DOC.read_text(), re.DOTALL)
    scope: dict[str, Any] = {"EXPORT": str(out)}
    exec(snippet, scope)  # the page's pandas example, as written
    assert dict(scope["per_week"]) == {(u, pd.Timestamp(w, unit="ms", tz="UTC")): n for (u, w), n in Counter(
        (f.user, monday(f.minute_ms)) for f in facts).items()}  # fmt: skip
    assert dict(scope["error_rate"]) == pytest.approx({p: failures[p] / n for p, n in executions.items()})

    again = run_export(settings, kafka_settings(kafka_broker), lambda done, total: None)
    assert (again.read, again.exported, again.files) == (0, 0, [])  # nothing new since the first run


def test_a_backfill_after_newer_data_lands_in_its_windows_exactly_once(
    kafka_broker: str, tmp_path: Path
) -> None:
    """Today's users first; then last term's saved logs: 10 days old (hour and day windows), 50 days old
    (day windows only) and 500 days old (beyond every window: expired), with a kill -9 mid-backfill."""
    recent = recent_hour(2)
    newer = simulate_files(tmp_path / "newer", SimulatorSettings(users=3, seed=1, start=recent, duration=300))
    older = {
        age: simulate_files(
            tmp_path / f"older-{age}",
            SimulatorSettings(users=3, seed=age, start=recent - timedelta(days=age), duration=600),
        )
        for age in (10, 50, 500)
    }
    topics = unique(kafka_broker, "b")
    env = worker_env(kafka_broker, topics, f"pt-back-{uuid.uuid4().hex[:8]}") | {
        "PIONEER_WORKER_BATCH_SIZE": "20"
    }
    worker = WorkerProcess(env, tmp_path / "w", tmp_path / "w.log").start()
    try:
        collect(kafka_broker, topics, tmp_path / "newer", tmp_path / "s0")
        whole = {"from_ms": epoch_ms(recent) - 600 * DAY, "to_ms": epoch_ms(recent) + DAY}
        worker.wait_until(lambda w: w.get("overview", **whole)["current"]["events"] == len(newer),
                          what="today counted")  # fmt: skip
        for age in (10, 50, 500):
            shutil.copytree(tmp_path / f"older-{age}", tmp_path / "older", dirs_exist_ok=True)
        collector = CollectorThread(settings_for(tmp_path / "older", tmp_path / "s1"), kafka_broker, topics)
        try:
            worker.wait_until(lambda w: w.get("overview", **whole)["current"]["events"] > len(newer) + 500,
                              what="part of the backfill counted")  # fmt: skip
            worker.kill(signal.SIGKILL)
            worker.start()
            held = len(newer) + len(older[10]) + len(older[50])
            worker.wait_until(lambda w: w.get("overview", **whole)["current"]["events"] >= held,
                              timeout_s=180, what="the backfill counted after the restart")  # fmt: skip
        finally:
            collector.stop()
        days = worker.get("timeseries", resolution="day", **whole)
        assert points_by_start(days) == by_day([*newer, *older[10], *older[50]])  # exactly once
        for age, resolution, expected in ((10, "hour", older[10]), (50, "hour", []), (10, "minute", [])):
            start = epoch_ms(recent - timedelta(days=age))
            span = {"from_ms": start - HOUR, "to_ms": start + 2 * HOUR, "resolution": resolution}
            counted = worker.get("overview", **span)["current"]["events"]
            assert counted == len(expected), (age, resolution)  # hours keep 35 days; minutes saw none of it
        health = worker.get("health")["last_24h"]
        assert health["expired"] == len(older[500])
        assert health["backfilled"] == len(older[10]) + len(older[50])
        assert health["late"] == 0
    finally:
        worker.kill(signal.SIGTERM)
