"""Shared fixtures: one real Kafka broker per test session, on a free port in a temp dir; a worker that
counted simulated users in two namespaces."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from pioneer_base.kafka_local import LocalBroker
from streams.topics import TopicSettings, ensure_topics, topic_specs
from tests.helpers import (
    CollectorThread,
    WorkerProcess,
    consume_envelopes,
    kafka_settings,
    settings_for,
    unique_topics,
    worker_env,
)
from tests.simulated import MINUTES, NAMESPACES, START_MS, Simulated, simulate


@pytest.fixture(scope="session", autouse=True)
def clock_guard() -> None:
    """Under `make test-clock` (tests/timeshift): the moved clock is in effect in this process and in the
    processes the tests start, or the guard would pass without guarding anything."""
    days = os.environ.get("CLOCK_SHIFT_DAYS")
    if not days:
        return
    import time_machine  # noqa: PLC0415 (a dev dependency only the guard needs)

    shift_s = float(days) * 86_400
    real = time_machine.escape_hatch.time.time()
    assert abs(time.time() - real - shift_s) < 60, "the clock guard's shift is not in effect in pytest"
    child = subprocess.run(
        [sys.executable, "-c", "import time; print(time.time())"], capture_output=True, text=True, check=True
    )
    assert abs(float(child.stdout) - real - shift_s) < 60, "the clock guard's shift is not inherited"


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of a real single-node Kafka started for this test session."""
    broker = LocalBroker(tmp_path_factory.mktemp("kafka"))
    result = broker.start(port=0, heap="512m", timeout_s=120)
    try:
        yield result.state.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def topics(kafka_broker: str) -> TopicSettings:
    """A fresh set of the pipeline's topics (unique names) on the session broker."""
    settings = unique_topics(f"t{uuid.uuid4().hex[:8]}")
    asyncio.run(ensure_topics(kafka_settings(kafka_broker), topic_specs(settings)))
    return settings


@pytest.fixture(scope="session")
def namespaced(
    kafka_broker: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[WorkerProcess, Simulated]]:
    """A worker that counted every event of the simulated users in two namespaces (tests/simulated.py),
    read from their pod log files by the collector. Shared by the API and the dashboard tests."""
    base = tmp_path_factory.mktemp("namespaced")
    simulated = simulate(base)
    topics = unique_topics(f"n{uuid.uuid4().hex[:8]}")
    asyncio.run(ensure_topics(kafka_settings(kafka_broker), topic_specs(topics)))
    env = worker_env(kafka_broker, topics, f"pt-ns-{uuid.uuid4().hex[:8]}")
    worker = WorkerProcess(env, base / "worker", base / "worker.log").start()
    try:
        lines = sum(
            1 for path in simulated.log_dir.glob("*.log") for line in path.open() if "eventDetail" in line
        )
        collector = CollectorThread(
            settings_for(simulated.log_dir, base, namespaces=list(NAMESPACES)), kafka_broker, topics
        )
        try:
            assert len(consume_envelopes(kafka_broker, topics.raw, expected=lines)) == lines
        finally:
            collector.stop()
        span = {"from_ms": START_MS, "to_ms": START_MS + MINUTES * 60_000}
        worker.wait_until(
            lambda w: w.get("overview", **span)["current"]["events"] == simulated.total,
            what="every simulated event counted",
        )
        yield worker, simulated
    finally:
        worker.kill(signal.SIGTERM)
