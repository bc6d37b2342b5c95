"""The local broker and topic set-up, against a real Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from pioneer_base.kafka_local import LocalBroker, free_port, port_is_free
from streams.topics import TopicSettings, TopicSpec, ensure_topics, topic_specs
from tests.helpers import kafka_settings

pytestmark = pytest.mark.kafka
CLI = [sys.executable, "-m", "pioneer_telemetry"]


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


async def partition_counts(bootstrap: str, names: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(names)}
    finally:
        await admin.close()


def test_produce_and_consume_through_the_broker(kafka_broker: str) -> None:
    topic = f"roundtrip-{uuid.uuid4().hex[:8]}"
    sent = [f"message {i}".encode() for i in range(500)]

    async def roundtrip() -> list[bytes]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_broker, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            batch = [await producer.send(topic, value, key=b"one-key") for value in sent]
            await asyncio.gather(*batch)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_broker, auto_offset_reset="earliest")
        await consumer.start()
        try:
            received: list[bytes] = []
            while len(received) < len(sent):
                batches = await consumer.getmany(timeout_ms=10_000)
                assert batches, "no message within 10 s"
                received += [record.value for records in batches.values() for record in records]
            return received
        finally:
            await consumer.stop()

    assert asyncio.run(roundtrip()) == sent  # one key -> one partition -> order kept


def test_topics_are_created_with_the_configured_partitions(kafka_broker: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:6]}"
    settings = TopicSettings(
        raw=f"{prefix}.raw",
        events=f"{prefix}.events",
        deadletter=f"{prefix}.dl",
        aggregates=f"{prefix}.agg",
        partitions=3,
    )
    specs = topic_specs(settings)
    first = asyncio.run(ensure_topics(kafka_settings(kafka_broker), specs))
    assert {(c.name, c.action, c.partitions) for c in first} == {(s.name, "created", 3) for s in specs}
    assert asyncio.run(partition_counts(kafka_broker, [s.name for s in specs])) == {s.name: 3 for s in specs}

    again = asyncio.run(ensure_topics(kafka_settings(kafka_broker), specs))
    assert {c.action for c in again} == {"ok"}

    grown = [TopicSpec(specs[0].name, 5, 1)]
    assert [c.action for c in asyncio.run(ensure_topics(kafka_settings(kafka_broker), grown))] == ["grown"]
    assert asyncio.run(partition_counts(kafka_broker, [specs[0].name])) == {specs[0].name: 5}


def test_start_twice_runs_one_broker_and_stop_leaves_nothing(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "broker")
    first = cli("kafka", "start", "--port", "0", "--data-dir", data_dir)
    assert first.returncode == 0, first.stderr
    bootstrap = first.stdout.strip()
    state = LocalBroker(Path(data_dir)).state()
    assert state is not None
    assert bootstrap == state.bootstrap
    try:
        second = cli("kafka", "start", "--port", "0", "--data-dir", data_dir)
        assert second.returncode == 0, second.stderr
        assert second.stdout.strip() == bootstrap
        assert "already running" in second.stderr
        assert LocalBroker(Path(data_dir)).state() == state

        status = cli("kafka", "status", "--data-dir", data_dir)
        assert (status.returncode, status.stdout.strip()) == (0, bootstrap)
    finally:
        stop = cli("kafka", "stop", "--data-dir", data_dir)
    assert stop.returncode == 0
    assert (
        not Path(f"/proc/{state.pid}").exists()
        or b"kafka.Kafka" not in Path(f"/proc/{state.pid}/cmdline").read_bytes()
    )
    assert port_is_free(state.port)
    assert cli("kafka", "status", "--data-dir", data_dir).returncode == 1


def test_up_runs_the_whole_stack_and_ctrl_c_stops_everything_it_started(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("KAFKA_BOOTSTRAP_SERVERS")}
    env["PIONEER_TOPICS_PARTITIONS"] = "2"
    data_dir, worker_port, dashboard_port = tmp_path / "broker", free_port(), free_port()
    process = subprocess.Popen(
        [*CLI, "up", "--port", "0", "--data-dir", str(data_dir), "--dir", str(tmp_path / "stack"),
         "--worker-port", str(worker_port), "--dashboard-port", str(dashboard_port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    children: list[int] = []
    try:
        output = read_until(process, "Stack is up")
        for name in (
            TopicSettings().model_dump(include={"raw", "events", "deadletter", "aggregates"}).values()
        ):
            assert f"topic      {name}  partitions=2  created" in output
        children = [int(line.split()[2]) for line in output.splitlines() if line.split()[0] in
                    ("worker", "collector", "dashboard", "simulator")]  # fmt: skip
        assert len(children) == 4
        state = LocalBroker(data_dir).state()
        assert state is not None
        events = wait_for_events(f"http://127.0.0.1:{worker_port}/api/v1/overview", timeout_s=120)
        assert events > 0  # simulated users -> files -> collector -> Kafka -> worker -> API
        assert wait_for_page(f"http://127.0.0.1:{dashboard_port}/", timeout_s=60)
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=90) == 0
    assert LocalBroker(data_dir).state() is None
    assert port_is_free(state.port)
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]


def test_up_uses_an_existing_cluster_from_kafka_bootstrap_servers(kafka_broker: str, tmp_path: Path) -> None:
    prefix = f"ext{uuid.uuid4().hex[:6]}"
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=kafka_broker, PIONEER_TOPICS_RAW=f"{prefix}.raw")
    process = subprocess.Popen(
        [*CLI, "up", "--data-dir", str(tmp_path / "unused"), "--no-demo", "--dir", str(tmp_path / "stack"),
         "--worker-port", str(free_port()), "--dashboard-port", str(free_port())],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        output = read_until(process, "Stack is up")
        assert output.startswith(f"Kafka      {kafka_broker}  (already running")
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
    assert not (tmp_path / "unused").exists()
    assert asyncio.run(partition_counts(kafka_broker, [f"{prefix}.raw"])) == {f"{prefix}.raw": 8}


def read_until(process: subprocess.Popen[str], marker: str) -> str:
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith(marker):
            return "".join(lines)
    raise AssertionError("".join(lines) + (process.stderr.read() if process.stderr else ""))


def wait_for_page(url: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=5) as response:
            if response.status == 200:
                return True
        time.sleep(1)
    return False


def wait_for_events(url: str, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            with urllib.request.urlopen(url, timeout=5) as response:
                events = json.load(response)["current"]["events"]
            if events:
                return events
        time.sleep(1)
    return 0


def test_topics_create_is_idempotent_on_the_configured_cluster(kafka_broker: str) -> None:
    prefix = f"tc{uuid.uuid4().hex[:6]}"
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=kafka_broker, PIONEER_TOPICS_RAW=f"{prefix}.raw",
               PIONEER_TOPICS_PARTITIONS="3")  # fmt: skip
    first = cli("topics", "create", env=env)
    assert first.returncode == 0, first.stderr
    assert f"topic      {prefix}.raw  partitions=3  created" in first.stdout
    again = cli("topics", "create", env=env)
    assert f"topic      {prefix}.raw  partitions=3  ok" in again.stdout
    unreachable = cli("topics", "create", env=dict(env, KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}"))
    assert unreachable.returncode == 1
    assert "creating topics" in unreachable.stderr
