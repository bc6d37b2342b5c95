"""The read API asks for a bearer token on every endpoint but the liveness probe, the fan-out between
workers included; the dashboard sends it. Without a token a worker listens on loopback only."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from streams.topics import TopicSettings, ensure_topics, topic_specs
from tests.helpers import WorkerProcess, kafka_settings, unique_topics, worker_env
from tests.truth import all_counted, assert_equals_truth, collect, simulate, truth_range

pytestmark = pytest.mark.kafka

APP = Path(__file__).parent.parent / "dashboard" / "app.py"
ENDPOINTS = ["overview", "timeseries", "top", "namespaces", "users/alice", "notebooks?path=a.ipynb",
             "health", "local/windows", "local/health"]  # fmt: skip


def status(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture(scope="module")
def guarded(
    kafka_broker: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[list[WorkerProcess], str, dict[str, Any]]]:
    """Two workers sharing the partitions and one token, with a simulated run counted."""
    base = tmp_path_factory.mktemp("auth")
    token = secrets.token_urlsafe(32)
    topics = unique(kafka_broker)
    env = worker_env(kafka_broker, topics, f"pt-auth-{uuid.uuid4().hex[:8]}") | {
        "PIONEER_WORKER_API_TOKEN": token
    }
    workers = [WorkerProcess(env, base / f"w{n}", base / f"w{n}.log").start() for n in (1, 2)]
    try:
        for worker in workers:
            worker.wait_until(lambda w: len(w.get("health")["workers"]) == 2, what="two workers in the group")
        truth = simulate(base / "logs")
        collect(kafka_broker, topics, base / "logs", base)
        for worker in workers:
            worker.wait_until(all_counted(truth), what="all events counted")
        yield workers, token, truth
    finally:
        for worker in workers:
            worker.kill(signal.SIGTERM)


def unique(kafka_broker: str) -> TopicSettings:
    """The pipeline's topics under fresh names."""
    topics = unique_topics(f"a{uuid.uuid4().hex[:8]}")
    asyncio.run(ensure_topics(kafka_settings(kafka_broker), topic_specs(topics)))
    return topics


def test_every_endpoint_but_liveness_wants_the_token(
    guarded: tuple[list[WorkerProcess], str, dict[str, Any]],
) -> None:
    workers, token, _ = guarded
    for worker in workers:
        for endpoint in ENDPOINTS:
            url = f"{worker.url}/api/v1/{endpoint}"
            assert status(url) == 401, url
            assert status(url, "wrong-" + token) == 401, url
            assert status(url, token[:-1]) == 401, url
            assert status(url, token) == 200, url
        assert status(f"{worker.url}/api/v1/live") == 200
        assert status(f"{worker.url}/table/minutes") == 404  # Faust's table pages would bypass the token


def test_the_fan_out_carries_the_token_and_both_workers_answer_everything(
    guarded: tuple[list[WorkerProcess], str, dict[str, Any]],
) -> None:
    workers, _, truth = guarded
    owned = [set(w.get("local/health")["partitions"]) for w in workers]
    assert owned[0]
    assert owned[1]
    for worker in workers:
        assert_equals_truth(worker, truth)


def test_the_dashboard_sends_the_token(
    guarded: tuple[list[WorkerProcess], str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    workers, token, truth = guarded
    for name in [n for n in os.environ if n.startswith("PIONEER_")]:
        monkeypatch.delenv(name)
    span = truth_range(truth)
    query = {"range": "custom", "from": iso_minute(span["from_ms"]), "to": iso_minute(span["to_ms"])}
    monkeypatch.setenv("PIONEER_DASHBOARD_API_URL", workers[0].url)
    without = AppTest.from_file(APP, default_timeout=60)
    without.query_params.update(query)
    without.run()
    assert "wants a token" in without.error[0].value
    assert not without.metric
    monkeypatch.setenv("PIONEER_DASHBOARD_API_TOKEN", token)
    page = AppTest.from_file(APP, default_timeout=60)
    page.query_params.update(query)
    page.run()
    assert not page.exception, page.exception
    assert not page.error
    active = {m.label: m.value for m in page.metric}["Active users"]
    assert active == str(len(truth["by_user"]))


def iso_minute(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M")


def test_without_a_token_the_worker_listens_on_loopback_only(kafka_broker: str, tmp_path: Path) -> None:
    topics = unique(kafka_broker)
    env = worker_env(kafka_broker, topics, f"pt-open-{uuid.uuid4().hex[:8]}") | {
        "PIONEER_WORKER_WEB_HOST": "0.0.0.0"
    }
    worker = WorkerProcess(env, tmp_path / "w", tmp_path / "w.log").start()
    try:
        health = worker.wait_until(lambda w: w.get("health"), what="the API answers")
        assert health["workers"] == [worker.url]  # http://127.0.0.1:<port>, not 0.0.0.0
        assert "listening on 127.0.0.1 only" in worker.log_path.read_text()
    finally:
        worker.kill(signal.SIGTERM)
