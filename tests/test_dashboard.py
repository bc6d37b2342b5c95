"""The dashboard: its pure functions, its launcher, and every page (AppTest) against a real worker fed by
the simulator through the collector; the numbers on the page equal the API's."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import sys
import tomllib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import model
from dashboard.cli import streamlit_command, write_auth_secrets
from dashboard.client import Api, ApiError, ApiUnreachable, Span
from dashboard.settings import DashboardSettings
from pioneer_base.kafka_local import free_port
from streams.topics import ensure_topics, topic_specs
from tests.helpers import WorkerProcess, kafka_settings, unique_topics, worker_env
from tests.simulated import MINUTES, START_MS, Simulated

APP = Path(__file__).parent.parent / "dashboard" / "app.py"
UTC_ZONE = model.zone("UTC")
T0 = 1_795_683_600_000  # 2026-11-26T09:00:00Z


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("PIONEER_")]:
        monkeypatch.delenv(name)


def app_test(api_url: str, **query: str | list[str]) -> AppTest:
    os.environ["PIONEER_DASHBOARD_API_URL"] = api_url  # clean_env removes it again after the test
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(query)
    return at.run()


def metrics(at: AppTest) -> dict[str, tuple[str, str]]:
    return {m.label: (m.value, m.delta) for m in at.metric}


def table(at: AppTest, key: str) -> Any:
    return next(frame.value for frame in at.dataframe if frame.key == key)


def texts(at: AppTest) -> str:
    parts = [*at.markdown, *at.caption, *at.info, *at.warning, *at.error, *at.code]
    return "\n".join(str(part.value) for part in parts)


# -- pure functions ----------------------------------------------------------------------------------

OVERVIEW = {
    "from_ms": T0,
    "to_ms": T0 + 3_600_000,
    "current": {"events": 4124, "events_by_name": {"CellEditEvent": 3228, "CellExecuteEvent": 256},
                "active_users": 5, "active_sessions": 7, "active_notebooks": 9, "executions": 256,
                "failures": 28, "events_per_min": 68.73, "executions_per_min": 4.27, "failure_rate": 0.109375},
    "previous": {"events": 3000, "events_by_name": {"CellEditEvent": 2000, "CellExecuteEvent": 300},
                 "active_users": 6, "active_sessions": 7, "active_notebooks": 4, "executions": 300,
                 "failures": 0, "events_per_min": 50.0, "executions_per_min": 5.0, "failure_rate": 0.0},
}  # fmt: skip


def test_kpis_show_the_api_numbers_and_their_change() -> None:
    span = Span(T0, T0 + 3_600_000, "minute")
    tiles = {tile.label: tile for tile in model.kpis(OVERVIEW, span)}
    assert [(t.text, t.delta) for t in tiles.values()] == [
        ("5", "-1"), ("7", "+0"), ("9", "+5"), ("68.7", "+18.7"), ("4.3", "-0.7"), ("10.9 %", "+10.9 pp"),
    ]  # fmt: skip
    assert tiles["Failure rate"].lower_is_better
    filtered = {t.label: t for t in model.kpis(OVERVIEW, span, ["CellExecuteEvent"])}
    assert (filtered["Events/min"].text, filtered["Events/min"].previous_text) == ("4.3", "5.0")
    by_day = {t.label: t for t in model.kpis(OVERVIEW, Span(T0, T0 + 30 * model.DAY_MS, "day"))}
    assert (by_day["Events/day"].text, by_day["Executions/day"].text) == ("98,971.2", "6,148.8")
    no_executions = {**OVERVIEW, "previous": {**OVERVIEW["previous"], "failure_rate": None}}
    assert model.kpis(no_executions, span)[-1].delta is None


def test_drill_down_tiles_compare_with_the_previous_period_and_follow_the_event_filter() -> None:
    numbers = {"events": 10, "events_by_name": {"CellEditEvent": 7, "CellExecuteEvent": 3}, "executions": 3,
               "failures": 1, "active_sessions": 2, "active_minutes": 4}  # fmt: skip
    previous = numbers | {"events": 1, "events_by_name": {"CellEditEvent": 1}, "active_sessions": 1}
    detail = numbers | {"last_seen_ms": T0, "previous": previous}
    tiles = model.user_kpis(detail, Span(T0, T0 + 3_600_000, "minute"), UTC_ZONE, ["CellEditEvent"])
    assert [(t.label, t.text, t.delta) for t in tiles] == [
        ("Events", "7", "+6"), ("Executions", "3", "+0"), ("Failure rate", "33.3 %", "+0.0 pp"),
        ("Active minutes", "4", "+0"), ("Sessions", "2", "+1"), ("Last seen", "09:00", None),
    ]  # fmt: skip
    timeline = [{"start_ms": T0, **numbers}]
    assert model.drilldown_sparklines(tiles, timeline, ["CellEditEvent"]) == [
        [7.0], [3.0], [1 / 3], None, [2.0], None,
    ]  # fmt: skip
    notebook = model.notebook_kpis(detail | {"active_users": 2, "previous": previous | {"active_users": 3}})
    assert [(t.label, t.delta) for t in notebook][:3] == [
        ("Users", "-1"),
        ("Sessions", "+1"),
        ("Events", "+9"),
    ]


def test_relative_ranges_are_whole_windows_ending_with_the_current_one() -> None:
    now = T0 + 90_000 + 123  # 09:01:30.123
    held = model.Held(minute=T0 - model.DAY_MS, hour=T0 - 35 * model.DAY_MS)
    assert model.relative_span("15m", now, held) == Span(T0 + 120_000 - 900_000, T0 + 120_000, "minute")
    assert model.relative_span("1h", now, held).resolution == "minute"
    assert model.relative_span("1h", now, model.Held()).resolution == "minute"  # nothing held yet: no limit
    assert model.relative_span("1h", now, model.Held(minute=now)).resolution == "hour"  # beyond stream time
    assert model.relative_span("24h", now, held) == Span(T0 + 3_600_000 - 86_400_000, T0 + 3_600_000, "hour")
    week = model.relative_span("7d", now, held)
    assert (week.to_ms - week.from_ms, week.resolution) == (7 * 86_400_000, "hour")
    month = model.relative_span("30d", now, held)  # whole UTC days, today the last one
    assert month == Span(T0 - 9 * 3_600_000 - 29 * model.DAY_MS, T0 + 15 * 3_600_000, "day")
    berlin = model.relative_span("30d", now, model.Held(day_zone=model.zone("Europe/Berlin")))
    assert berlin.to_ms == T0 + 14 * 3_600_000  # midnight in Berlin, 23:00 UTC in November


def test_custom_ranges_use_minutes_wherever_the_worker_still_holds_them() -> None:
    """By stream time: a quiet or backfilled platform still holds minutes older than the wall clock's
    last 24 h, and the choice must not depend on the day the page is looked at."""
    start = datetime(2026, 11, 26, 9, 0)
    held = model.Held(minute=T0 - 3_600_000)  # the worker's minute windows start an hour before the range
    assert model.custom_span(start, start + timedelta(minutes=7), UTC_ZONE, held) == Span(
        T0, T0 + 420_000, "minute"
    )
    assert (
        model.custom_span(start, start + timedelta(minutes=7), UTC_ZONE, model.Held()).resolution == "minute"
    )
    assert model.custom_span(start, start + timedelta(hours=7), UTC_ZONE, held).resolution == "hour"
    expired = model.Held(minute=T0 + 60_000)  # the range's first minute is gone
    assert model.custom_span(start, start + timedelta(minutes=7), UTC_ZONE, expired).resolution == "hour"
    assert model.custom_span(start, start + timedelta(days=20), UTC_ZONE, held).resolution == "day"
    older = model.Held(hour=T0 + 3_600_000)  # hours gone too: by the day
    assert model.custom_span(start, start + timedelta(hours=7), UTC_ZONE, older).resolution == "day"
    berlin = model.zone("Europe/Berlin")
    assert model.custom_span(start, start + timedelta(hours=1), berlin, held).from_ms == T0 - 3_600_000
    with pytest.raises(ValueError, match="before its end"):
        model.custom_span(start, start, UTC_ZONE, held)
    with pytest.raises(ValueError, match="400 days"):
        model.custom_span(start, start + timedelta(days=401), UTC_ZONE, held)


def test_a_term_is_whole_months_by_the_day_in_the_day_windows_zone() -> None:
    held = model.Held(day_zone=model.zone("Europe/Berlin"))
    term = model.term_span("2026-09", "2027-01", held)
    assert term == Span(
        int(datetime(2026, 8, 31, 22, tzinfo=UTC).timestamp() * 1000),  # Sept 1st, Berlin summer time
        int(datetime(2027, 1, 31, 23, tzinfo=UTC).timestamp() * 1000),  # Feb 1st, winter time
        "day",
    )
    assert model.describe_span(term, held.day_zone).startswith("2026-09-01 – 2027-01-31 Europe/Berlin")
    with pytest.raises(ValueError, match="start before it ends"):
        model.term_span("2027-01", "2026-09", held)
    with pytest.raises(ValueError, match="13 months"):
        model.term_span("2025-01", "2026-09", held)
    months = model.month_choices(T0, UTC_ZONE)
    assert (months[0], months[1], len(months)) == ("2026-11", "2026-10", model.TERM_MONTHS)


def test_frames_for_charts_and_tables() -> None:
    points = [
        {"start_ms": T0, "events": 3, "events_by_name": {"CellEditEvent": 2, "MysteryEvent": 1},
         "active_users": 1, "executions": 0, "failures": 0},
        {"start_ms": T0 + 60_000, "events": 1, "events_by_name": {"CellExecuteEvent": 1},
         "active_users": 1, "executions": 1, "failures": 1},
    ]  # fmt: skip
    events = model.events_by_name_frame(points, UTC_ZONE)
    assert list(events["event"].unique()) == ["CellEditEvent", "CellExecuteEvent", "MysteryEvent"]
    assert len(events) == 6  # every name in every window, zeros included: the stack has no holes
    assert events["events"].sum() == 4
    assert set(model.events_by_name_frame(points, UTC_ZONE, ["CellExecuteEvent"])["event"]) == {
        "CellExecuteEvent"
    }
    heat = model.heatmap_frame(points, UTC_ZONE)
    assert len(heat) == 7 * 24
    assert heat.set_index(["weekday", "hour"]).loc[("Thu", 9), "events"] == 4  # 2026-11-26 is a Thursday
    assert (
        model.heatmap_frame(points, model.zone("Asia/Tokyo"))
        .set_index(["weekday", "hour"])
        .loc[("Thu", 18), "events"]
        == 4
    )
    rows = [{"user": "bob", "events": 9, "executions": 2, "failures": 1, "last_seen_ms": T0}]
    users = model.top_frame(rows, "users", UTC_ZONE)
    assert list(users.columns) == ["user", "events", "executions", "failures", "last_seen"]
    assert users.loc[0, "last_seen"] == datetime(2026, 11, 26, 9, 0)
    assert model.event_color("CellEditEvent") == model.EVENT_COLORS["CellEditEvent"]
    assert model.event_color("MysteryEvent") == model.event_color("MysteryEvent")


def health(lag: int, last_event_at: float | None, processed: int | None = 10, **day: int) -> dict[str, Any]:
    partitions = {"0": {"highwater": 10 + lag, "processed": processed, "lag": None if processed is None else lag,
                        "stream_time_ms": T0, "last_event_at": last_event_at}}  # fmt: skip
    last_24h = {"events": 10, "late": 0, "duplicates": 0, "dead_letters": 0} | day
    return {
        "workers": ["w"],
        "partitions": partitions,
        "lag": lag,
        "last_event_at": last_event_at,
        "last_24h": last_24h,
    }


def test_health_tells_a_quiet_platform_from_a_broken_pipeline() -> None:
    now = 1_000_000.0
    assert model.assess_health(health(0, now - 3), now).level == "live"
    assert model.assess_health(health(50_000, now - 3), now).level == "behind"
    quiet = model.assess_health(health(0, now - 3600), now)
    assert (quiet.level, quiet.title) == ("quiet", "Quiet platform")
    assert "60 min" in quiet.detail
    broken = model.assess_health(health(120, now - 600), now)
    assert (broken.level, broken.title) == ("broken", "Pipeline stalled")
    assert "120 lines wait in Kafka" in broken.detail
    never = model.assess_health(health(0, None, processed=None), now)
    assert never.level == "broken"  # lines wait in partition 0, none was ever processed
    assert never.waiting_partitions == ["0"]
    empty = {"workers": ["w"], "partitions": {}, "lag": 0, "last_event_at": None, "last_24h": {"events": 0}}
    assert model.assess_health(empty, now).level == "empty"
    restarted = empty | {"last_24h": {"events": 7}}  # last_event_at is the worker's memory, not its state
    assert model.assess_health(restarted, now).level == "quiet"
    notes = model.assess_health(health(0, now, dead_letters=3, late=2), now).notes
    assert any("3 lines" in note for note in notes)
    assert any("2 events" in note for note in notes)
    crashed = health(0, now) | {"crashes": {"http://w1:6066": "2026-11-26T20:00:00Z KeyError('x')"}}
    assert any("http://w1:6066 crashed" in note for note in model.assess_health(crashed, now).notes)


# -- the launcher and the settings -------------------------------------------------------------------


def test_settings_default_to_localhost_and_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = DashboardSettings()
    assert (settings.api_url, settings.host, settings.port, settings.refresh_s) == (
        "http://127.0.0.1:6066", "127.0.0.1", 8501, 5.0,
    )  # fmt: skip
    assert not settings.oidc_enabled
    monkeypatch.setenv("PIONEER_DASHBOARD_API_URL", "http://worker:6066")
    monkeypatch.setenv("PIONEER_DASHBOARD_OIDC_ALLOWED_GROUPS", '["admin"]')
    settings = DashboardSettings()
    assert (settings.api_url, settings.oidc_allowed_groups) == ("http://worker:6066", ["admin"])


def test_the_launcher_runs_streamlit_headless_on_the_configured_address() -> None:
    command = streamlit_command(DashboardSettings(port=8599))
    assert command[:4] == [sys.executable, "-m", "streamlit", "run"]
    assert Path(command[4]) == APP
    joined = " ".join(command)
    for option in ("--server.address 127.0.0.1", "--server.port 8599", "--server.headless true",
                   "--browser.gatherUsageStats false"):  # fmt: skip
        assert option in joined
    assert "--secrets.files" not in command
    behind_proxy = DashboardSettings(host="0.0.0.0", base_url_path="/telemetry/")
    assert streamlit_command(behind_proxy)[-2:] == ["--server.baseUrlPath", "telemetry"]
    assert behind_proxy.redirect_uri == "http://localhost:8501/telemetry/oauth2callback"


def test_oidc_settings_become_streamlit_auth_secrets(tmp_path: Path) -> None:
    settings = DashboardSettings(
        port=8600,
        oidc_client_id="pioneer-dashboard",
        oidc_client_secret='s3cr"et',
        oidc_server_metadata_url="https://nebari.example.org/auth/realms/nebari/.well-known/openid-configuration",
        secrets_file=tmp_path / "dashboard" / "secrets.toml",
    )
    path = write_auth_secrets(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    auth = tomllib.loads(path.read_text())["auth"]
    assert auth["client_id"] == "pioneer-dashboard"
    assert auth["client_secret"] == 's3cr"et'
    assert auth["redirect_uri"] == "http://127.0.0.1:8600/oauth2callback"
    assert auth["server_metadata_url"].endswith("/openid-configuration")
    assert auth["client_kwargs"] == {"scope": "openid profile email"}
    assert len(auth["cookie_secret"]) >= 32
    assert (
        tomllib.loads(write_auth_secrets(settings).read_text())["auth"]["cookie_secret"]
        == auth["cookie_secret"]
    )
    assert streamlit_command(settings, path)[-2:] == ["--secrets.files", str(path)]
    with pytest.raises(ValueError, match="oidc_client_secret"):
        write_auth_secrets(settings.model_copy(update={"oidc_client_secret": None}))


# -- pages without a worker --------------------------------------------------------------------------


def test_an_unreachable_api_is_named_and_retried() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(ApiUnreachable):
        Api(url, timeout_s=2).health()
    at = app_test(url)
    assert not at.exception
    message = at.error[0].value
    assert f"Cannot reach the worker's API at {url}" in message
    assert f"{url}/api/v1/health" in message
    assert "Retrying every 5 s" in message
    assert not at.metric


def test_filters_live_in_the_url_and_custom_starts_from_the_range_shown() -> None:
    at = app_test(f"http://127.0.0.1:{free_port()}", range="15m", event=["CellEditEvent"])
    assert at.button_group(key="range").value == "15m"
    assert at.multiselect(key="event").value == ["CellEditEvent"]
    assert not at.multiselect(key="event").disabled  # the overview breaks events down by name
    assert not at.datetime_input
    at.button_group(key="range").set_value("custom").run()
    start, end = (w.value for w in at.datetime_input)
    assert end - start == timedelta(minutes=15)
    assert abs(end - datetime.now(UTC).replace(tzinfo=None)) < timedelta(minutes=2)
    at.switch_page("views/user.py").run()
    assert not at.multiselect(key="event").disabled  # a user's events are broken down by name too
    assert at.multiselect(key="event").value == ["CellEditEvent"]  # the filters travel along
    assert "Choose a user above" in texts(at)


def test_with_oidc_the_page_asks_for_a_login_and_checks_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIONEER_DASHBOARD_OIDC_CLIENT_ID", "pioneer")
    monkeypatch.setenv("PIONEER_DASHBOARD_OIDC_SERVER_METADATA_URL", "https://kc.example.org/.well-known/x")
    monkeypatch.setenv("PIONEER_DASHBOARD_OIDC_ALLOWED_GROUPS", '["admin"]')
    monkeypatch.setenv("PIONEER_DASHBOARD_API_URL", f"http://127.0.0.1:{free_port()}")
    at = AppTest.from_file(APP, default_timeout=30)
    at.user = {"is_logged_in": False}
    at.run()
    assert [b.label for b in at.button] == ["Log in"]
    assert not at.error
    at = AppTest.from_file(APP, default_timeout=30)
    at.user = {"is_logged_in": True, "email": "ann@example.org", "groups": ["/developer"]}
    at.run()
    assert "not in a group allowed" in at.error[0].value
    at = AppTest.from_file(APP, default_timeout=30)
    at.user = {"is_logged_in": True, "email": "ann@example.org", "groups": ["/admin"]}
    at.run()
    assert "Signed in as ann@example.org" in texts(at)
    assert "Cannot reach the worker's API" in at.error[0].value  # past the gate, on to the page


# -- every page against a real worker ----------------------------------------------------------------


def iso_minute(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M")


def start_worker(kafka_broker: str, base: Path, name: str) -> tuple[WorkerProcess, Any]:
    topics = unique_topics(f"d{uuid.uuid4().hex[:8]}")
    asyncio.run(ensure_topics(kafka_settings(kafka_broker), topic_specs(topics)))
    env = worker_env(kafka_broker, topics, f"pt-dash-{uuid.uuid4().hex[:8]}")
    return WorkerProcess(env, base / name, base / f"{name}.log").start(), topics


@pytest.fixture(scope="module")
def fed(namespaced: tuple[WorkerProcess, Simulated]) -> dict[str, Any]:
    """The worker that counted 6 simulated minutes of users in two namespaces, and the custom range (the
    page's query parameters and the API's span) that holds them."""
    worker, simulated = namespaced
    query = {"range": "custom", "from": iso_minute(START_MS), "to": iso_minute(START_MS + MINUTES * 60_000)}
    held = model.Held.from_health(worker.get("health"))
    assert held.minute is not None
    assert held.minute <= START_MS  # three days back, by the wall clock, and still held: by stream time
    span = model.custom_span(
        datetime.fromisoformat(query["from"]), datetime.fromisoformat(query["to"]), UTC_ZONE, held
    )
    assert span.resolution == "minute"
    return {"worker": worker, "simulated": simulated, "query": query, "span": span}


@pytest.mark.kafka
def test_overview_numbers_equal_the_api(fed: dict[str, Any]) -> None:
    worker, span = fed["worker"], fed["span"]
    at = app_test(worker.url, **fed["query"])
    assert not at.exception, at.exception
    assert not at.error
    api = worker.get("overview", **span.params())
    assert api["current"]["events"] == fed["simulated"].total
    shown = metrics(at)
    current, previous = api["current"], api["previous"]
    assert shown["Active users"] == (
        str(current["active_users"]),
        f"{current['active_users'] - previous['active_users']:+}",
    )
    assert shown["Sessions"][0] == str(current["active_sessions"])
    assert shown["Notebooks"][0] == str(current["active_notebooks"])
    assert shown["Events/min"][0] == f"{current['events_per_min']:,.1f}"
    assert shown["Executions/min"][0] == f"{current['executions_per_min']:,.1f}"
    assert shown["Failure rate"][0] == f"{current['failure_rate'] * 100:.1f} %"
    assert shown["Dead letters"][0] == "0"
    for key, dimension, columns in (
        ("top_users", "users", ["user", "events", "executions", "failures"]),
        ("top_notebooks", "notebooks", ["user", "notebook", "events", "executions", "failures"]),
    ):
        rows = worker.get("top", dimension=dimension, limit=10, **span.params())["rows"]
        assert table(at, key)[columns].to_dict("records") == [{c: r[c] for c in columns} for r in rows]
    errors = worker.get("top", dimension="errors", limit=10, **span.params())["rows"]
    shown_errors = next(f.value for f in at.dataframe if list(f.value.columns) == ["error", "failures"])
    assert shown_errors.to_dict("records") == errors
    assert "No telemetry" not in texts(at)
    assert "per minute" in texts(at)
    assert {b.label for b in at.download_button} == {"CSV"}
    assert len(at.download_button) == 4  # partitions, top users, top errors, top notebooks


@pytest.mark.kafka
def test_api_errors_carry_the_workers_message(fed: dict[str, Any]) -> None:
    with pytest.raises(ApiError) as raised:
        Api(fed["worker"].url).get("overview", from_ms=T0, to_ms=T0 - 1)
    assert raised.value.status == 400
    assert "from_ms must be before to_ms" in raised.value.message


@pytest.mark.kafka
def test_the_event_filter_restricts_event_counts(fed: dict[str, Any]) -> None:
    worker, span = fed["worker"], fed["span"]
    at = app_test(worker.url, **fed["query"], event=["CellExecuteEvent", "NotebookSaveEvent"])
    by_name = worker.get("overview", **span.params())["current"]["events_by_name"]
    expected = (by_name.get("CellExecuteEvent", 0) + by_name.get("NotebookSaveEvent", 0)) / span.minutes
    assert metrics(at)["Events/min"][0] == f"{expected:,.1f}"
    assert at.query_params["event"] == ["CellExecuteEvent", "NotebookSaveEvent"]
    assert at.query_params["range"] == "custom"


@pytest.mark.kafka
def test_the_namespace_filter_lives_in_the_url_and_restricts_the_pages(fed: dict[str, Any]) -> None:
    worker, span, simulated = fed["worker"], fed["span"], fed["simulated"]
    at = app_test(worker.url, **fed["query"], namespace="research")
    assert not at.exception, at.exception
    chooser = at.selectbox(key="namespace")
    assert (chooser.value, sorted(chooser.options)) == ("research", ["dev", "research"])

    def shows(namespace: str) -> None:
        api = worker.get("overview", namespace=namespace, **span.params())["current"]
        shown = metrics(at)
        assert shown["Active users"][0] == str(api["active_users"])
        assert shown["Sessions"][0] == str(api["active_sessions"])
        assert shown["Events/min"][0] == f"{api['events_per_min']:,.1f}"
        assert shown["Failure rate"][0] == f"{api['failure_rate'] * 100:.1f} %"
        rows = worker.get("top", dimension="notebooks", limit=10, namespace=namespace, **span.params())[
            "rows"
        ]
        assert table(at, "top_notebooks")[["user", "notebook", "events"]].to_dict("records") == [
            {c: r[c] for c in ("user", "notebook", "events")} for r in rows
        ]
        assert f"namespace {namespace}" in texts(at)

    shows("research")
    chooser.set_value("dev").run()  # (the browser writes a changed widget into the URL: see the browser test)
    shows("dev")
    assert metrics(at)["Active users"][0] == str(len({f.user for f in simulated.where("dev")}))
    at.session_state["top_users"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()  # to the user's page: the namespace travels along, and the choice of users follows it
    assert at.query_params["namespace"] == "dev"
    assert sorted(at.selectbox(key="user").options) == sorted({f.user for f in simulated.where("dev")})


def filtered(numbers: dict[str, Any], names: list[str]) -> int:
    return sum(numbers["events_by_name"].get(name, 0) for name in names)


@pytest.mark.kafka
def test_drill_downs_filter_by_namespace_and_event_name_against_the_previous_period(
    fed: dict[str, Any],
) -> None:
    """The second half of the simulation, compared with the first half, in one namespace."""
    worker, simulated = fed["worker"], fed["simulated"]
    half, end = START_MS + MINUTES // 2 * 60_000, START_MS + MINUTES * 60_000
    query = {"range": "custom", "from": iso_minute(half), "to": iso_minute(end), "namespace": "research"}
    span = Span(half, end, "minute")
    names = ["CellExecuteEvent", "CellEditEvent"]
    user = next(f.user for f in simulated.where("research") if simulated.where("dev", f.user))  # in both

    at = app_test(worker.url, **query, event=names, user=user)
    at.switch_page("views/user.py").run()
    assert not at.exception, at.exception
    detail = worker.get(f"users/{user}", namespace="research", **span.params())
    assert detail["events"] != worker.get(f"users/{user}", namespace="dev", **span.params())["events"]
    previous, shown = detail["previous"], metrics(at)
    assert shown["Events"] == (
        f"{filtered(detail, names):,}",
        f"{filtered(detail, names) - filtered(previous, names):+,}",
    )
    for label, field in (("Executions", "executions"), ("Sessions", "active_sessions"),
                         ("Active minutes", "active_minutes")):  # fmt: skip
        assert shown[label] == (str(detail[field]), f"{detail[field] - previous[field]:+}"), label
    notebooks = table(at, "user_notebooks")
    assert dict(zip(notebooks["notebook"], notebooks["events"], strict=True)) == {
        nb["notebook"]: filtered(nb, names) for nb in detail["notebooks"]
    }

    path = max(simulated.where("research"), key=lambda f: len(simulated.where("research", path=f.path))).path
    at = app_test(worker.url, **query, event=names, notebook=path)
    at.switch_page("views/notebook.py").run()
    assert not at.exception, at.exception
    detail = Api(worker.url).notebook(span, path, "research")
    previous, shown = detail["previous"], metrics(at)
    assert shown["Events"] == (
        f"{filtered(detail, names):,}",
        f"{filtered(detail, names) - filtered(previous, names):+,}",
    )
    for label, field in (
        ("Users", "active_users"),
        ("Sessions", "active_sessions"),
        ("Failures", "failures"),
    ):
        assert shown[label] == (str(detail[field]), f"{detail[field] - previous[field]:+}"), label
    users = table(at, "notebook_users")
    assert dict(zip(users["user"], users["events"], strict=True)) == {
        u["user"]: filtered(u, names) for u in detail["users"]
    }


@pytest.mark.kafka
def test_selecting_a_top_user_opens_their_page(fed: dict[str, Any]) -> None:
    at = app_test(fed["worker"].url, **fed["query"])
    second = table(at, "top_users").iloc[1]["user"]
    at.session_state["top_users"] = {"selection": {"rows": [1], "columns": [], "cells": []}}
    at.run()
    assert at.query_params["user"] == second
    assert at.query_params["range"] == "custom"  # the filters travel along
    assert at.selectbox(key="user").value == second
    assert "Executions" in metrics(at)


@pytest.mark.kafka
def test_user_page_numbers_equal_the_api(fed: dict[str, Any]) -> None:
    worker, span = fed["worker"], fed["span"]
    user = worker.get("top", dimension="users", limit=1, **span.params())["rows"][0]["user"]
    at = app_test(worker.url, **fed["query"], user=user)
    at.switch_page("views/user.py").run()
    assert not at.exception, at.exception
    detail = worker.get(f"users/{user}", **span.params())
    shown = metrics(at)
    assert shown["Events"][0] == f"{detail['events']:,}"
    assert shown["Executions"][0] == str(detail["executions"])
    assert shown["Failure rate"][0] == f"{detail['failures'] / detail['executions'] * 100:.1f} %"
    assert shown["Active minutes"][0] == str(detail["active_minutes"])
    assert shown["Sessions"][0] == str(len(detail["sessions"]))
    notebooks = table(at, "user_notebooks")
    assert sorted(notebooks["notebook"]) == sorted(nb["notebook"] for nb in detail["notebooks"])
    assert notebooks["events"].sum() == sum(nb["events"] for nb in detail["notebooks"])
    sessions = next(f.value for f in at.dataframe if list(f.value.columns) == ["session"])
    assert list(sessions["session"]) == detail["sessions"]


@pytest.mark.kafka
def test_notebook_page_numbers_equal_the_api(fed: dict[str, Any]) -> None:
    worker, span = fed["worker"], fed["span"]
    rows = worker.get("top", dimension="notebooks", limit=100, **span.params())["rows"]
    path = max(rows, key=lambda r: (sum(x["notebook"] == r["notebook"] for x in rows), r["events"]))[
        "notebook"
    ]
    at = app_test(worker.url, **fed["query"], notebook=path)
    at.switch_page("views/notebook.py").run()
    assert not at.exception, at.exception
    detail = Api(worker.url).notebook(span, path)  # (WorkerProcess.get takes `path` itself)
    shown = metrics(at)
    assert shown["Users"][0] == str(len(detail["users"]))
    assert shown["Events"][0] == f"{detail['events']:,}"
    assert (shown["Executions"][0], shown["Failures"][0]) == (
        str(detail["executions"]),
        str(detail["failures"]),
    )
    users = table(at, "notebook_users")
    columns = ["user", "events", "executions", "failures"]
    assert users.to_dict("records") == sorted(
        ({c: u[c] for c in columns} for u in detail["users"]), key=lambda u: (-u["events"], u["user"])
    )
    if detail["failures_by_error"]:
        errors = next(f.value for f in at.dataframe if list(f.value.columns) == ["error", "failures"])
        assert dict(zip(errors["error"], errors["failures"], strict=True)) == detail["failures_by_error"]


@pytest.mark.kafka
def test_a_worker_without_data_explains_how_to_enable_telemetry(kafka_broker: str, tmp_path: Path) -> None:
    worker, _ = start_worker(kafka_broker, tmp_path, "empty")
    try:
        worker.wait_until(lambda w: w.get("health"), what="the API answers")
        at = app_test(worker.url)
        assert not at.exception, at.exception
        assert "No telemetry has reached the pipeline yet" in at.warning[0].value
        snippet = at.code[0].value
        assert "jupyterlab_pioneer:" in snippet
        assert "enabled: true" in snippet
        assert "log_format:" in snippet
        assert not [m for m in at.metric if m.label == "Active users"]  # no empty charts and tiles
        assert any(m.label == "Consumer lag" for m in at.metric)  # the health panel still shows
    finally:
        worker.kill(signal.SIGTERM)
