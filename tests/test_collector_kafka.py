"""The collector against a real broker: nothing lost through rotation, kill -9 and a broker outage;
nothing secret on the raw topic; forward protocol and stdin sources."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from collector.settings import CollectorSettings
from pioneer_base.kafka_local import LocalBroker, free_port
from streams.topics import TopicSettings, ensure_topics, topic_specs
from tests.helpers import (
    CollectorThread,
    consume,
    consume_envelopes,
    kafka_settings,
    settings_for,
    wait_for_port,
)

pytestmark = pytest.mark.kafka

SECRET = "99e2b2e16d77e1524be106d38960fc8f"
PREFIX = "2026-11-26 18:15:23,471      INFO   20 jupyter_jupyterlab_pioneer_config: "


def event_line(n: int, name: str = "CellEditEvent") -> str:
    info = {"index": 0, "changes": [n, [0, "x"]], "type": "code"}
    if name == "NotebookOpenEvent":
        info = {
            "environ": {
                "LANG": "C.UTF-8",
                "JUPYTERHUB_API_TOKEN": SECRET,
                "CONDA_STORE_TOKEN": f"tok-{SECRET}",
            }
        }
    event = {
        "eventDetail": {"eventName": name, "eventTime": 1795716923416 + n, "eventInfo": info},
        "notebookState": {"sessionID": "7aae47f3", "notebookPath": "a.ipynb", "notebookContent": None},
    }
    return PREFIX + json.dumps(event)


def cri(line: str) -> str:
    return f"2026-11-26T18:15:23.471000001Z stderr F {line}\n"


def kubelet_name(pod: str) -> str:
    return f"{pod}_dev_notebook-{hashlib.sha256(pod.encode()).hexdigest()}.log"


def test_rotation_while_writing_loses_and_repeats_nothing(
    kafka_broker: str, topics: TopicSettings, tmp_path: Path
) -> None:
    log_dir = tmp_path / "containers"
    log_dir.mkdir()
    renamed = log_dir / kubelet_name("jupyter-alice")
    truncated = log_dir / kubelet_name("jupyter-bob")
    written: dict[str, list[str]] = {"jupyter-alice": [], "jupyter-bob": []}
    collector = CollectorThread(settings_for(log_dir, tmp_path), kafka_broker, topics)

    def write(path: Path, pod: str, start: int, count: int) -> None:
        with path.open("a") as handle:
            for n in range(start, start + count):
                line = event_line(n) if n % 5 else f"[I 2026-11-26 18:15:14.264 ServerApp] chatter {n}"
                handle.write(cri(line))
                if n % 5:
                    written[pod].append(line)

    try:
        write(renamed, "jupyter-alice", 0, 3000)
        write(truncated, "jupyter-bob", 0, 3000)
        time.sleep(0.3)
        renamed.rename(renamed.with_suffix(".log.1"))  # the kubelet's rename rotation...
        write(renamed.with_suffix(".log.1"), "jupyter-alice", 3000, 500)  # ...while the runtime still writes
        write(renamed, "jupyter-alice", 3500, 3000)
        so_far = sum(len(lines) for lines in written.values())
        assert len(consume_envelopes(kafka_broker, topics.raw, expected=so_far)) == so_far
        os.truncate(truncated, 0)  # copy-truncate, after everything before it was collected
        write(truncated, "jupyter-bob", 3000, 3000)
        messages = consume_envelopes(
            kafka_broker, topics.raw, expected=sum(len(lines) for lines in written.values())
        )
    finally:
        collector.stop()
    by_pod: dict[str, list[str]] = {"jupyter-alice": [], "jupyter-bob": []}
    for message in messages:
        by_pod[message["kubernetes"]["pod_name"]].append(message["log"])
    assert Counter(by_pod["jupyter-alice"]) == Counter(written["jupyter-alice"])
    assert by_pod["jupyter-bob"] == written["jupyter-bob"]
    assert {m["kubernetes"]["namespace_name"] for m in messages} == {"dev"}
    assert {m["stream"] for m in messages} == {"stderr"}


def test_kill_9_then_restart_delivers_every_line(
    kafka_broker: str, topics: TopicSettings, tmp_path: Path
) -> None:
    log_dir = tmp_path / "containers"
    log_dir.mkdir()
    path = log_dir / kubelet_name("jupyter-carol")
    env = dict(
        os.environ,
        KAFKA_BOOTSTRAP_SERVERS=kafka_broker,
        PIONEER_TOPICS_RAW=topics.raw,
        PIONEER_COLLECTOR_POLL_INTERVAL_S="0.05",
    )
    command = [
        sys.executable, "-m", "pioneer_telemetry", "collect", "--path", str(log_dir / "*.log"),
        "--start-at", "beginning", "--checkpoint-file", str(tmp_path / "positions.json"),
    ]  # fmt: skip
    total = 60_000
    lines = [event_line(n) for n in range(total)]
    collector = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        with path.open("a") as handle:
            for n, line in enumerate(lines):
                handle.write(cri(line))
                if n == total // 3:
                    handle.flush()
                    time.sleep(1.0)  # let it read and checkpoint some
                    collector.send_signal(signal.SIGKILL)
                    collector.wait()
                if n == total // 2:
                    collector = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
        messages = consume_envelopes(kafka_broker, topics.raw, expected=total, timeout_s=120, settle_s=2)
    finally:
        collector.send_signal(signal.SIGTERM)
        assert collector.wait(timeout=60) == 0, collector.stderr.read() if collector.stderr else ""
    positions = Counter((m["source"]["id"], m["source"]["offset"]) for m in messages)
    duplicates = sum(count - 1 for count in positions.values())
    assert set(m["log"] for m in messages) == set(lines)
    assert len(positions) == total  # every line, each at its own position
    assert len(messages) == total + duplicates  # a duplicate is always a line delivered twice
    print(f"kill -9: {total} lines, {duplicates} duplicates (same source position)")


def test_a_broker_outage_of_20_seconds_loses_nothing(topics: TopicSettings, tmp_path: Path) -> None:
    broker = LocalBroker(tmp_path / "broker")
    state = broker.start(port=0, heap="512m").state
    try:
        asyncio.run(ensure_topics(kafka_settings(state.bootstrap), topic_specs(topics)))
        log_dir = tmp_path / "containers"
        log_dir.mkdir()
        path = log_dir / kubelet_name("jupyter-dave")
        collector = CollectorThread(settings_for(log_dir, tmp_path), state.bootstrap, topics)
        lines = [event_line(n) for n in range(9000)]
        try:
            with path.open("a") as handle:
                handle.writelines(cri(line) for line in lines[:3000])
            time.sleep(2)
            broker.stop()
            with path.open("a") as handle:
                for n in range(3000, 9000, 1000):  # written while Kafka is down
                    handle.writelines(cri(line) for line in lines[n : n + 1000])
                    handle.flush()
                    time.sleep(3)
            broker.start(port=state.port, heap="512m")
            messages = consume_envelopes(
                state.bootstrap, topics.raw, expected=len(lines), timeout_s=120, settle_s=2
            )
        finally:
            collector.stop()
        assert Counter(m["log"] for m in messages).keys() == set(lines)
        assert len({(m["source"]["id"], m["source"]["offset"]) for m in messages}) == len(lines)
    finally:
        broker.stop()


def test_no_secret_reaches_the_raw_topic(kafka_broker: str, topics: TopicSettings, tmp_path: Path) -> None:
    log_dir = tmp_path / "containers"
    log_dir.mkdir()
    path = log_dir / kubelet_name("jupyter-erin")
    lines = [event_line(n, "NotebookOpenEvent" if n % 3 == 0 else "CellEditEvent") for n in range(300)]
    path.write_text("".join(cri(line) for line in lines))
    metrics_port = free_port()
    collector = CollectorThread(
        settings_for(log_dir, tmp_path, metrics_port=metrics_port), kafka_broker, topics
    )
    try:
        messages = consume_envelopes(kafka_broker, topics.raw, expected=len(lines))
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            metrics = response.read().decode()
    finally:
        collector.stop()
    acked = [line for line in metrics.splitlines() if line.startswith("pioneer_collector_lines_acked_total")]
    assert acked
    assert float(acked[0].split()[-1]) >= len(lines)
    assert len(messages) == len(lines)
    raw = json.dumps(messages)
    assert SECRET not in raw
    assert "JUPYTERHUB_API_TOKEN" not in raw
    opened = [m for m in messages if "NotebookOpenEvent" in m["log"]]
    assert len(opened) == 100
    assert all('"environ":{"LANG":"C.UTF-8"}' in m["log"] for m in opened)


def test_fluent_logger_and_stdin_sources_reach_the_raw_topic(
    kafka_broker: str, topics: TopicSettings, tmp_path: Path
) -> None:
    from fluent import sender  # noqa: PLC0415

    port = free_port()
    collector = CollectorThread(
        CollectorSettings(forward_port=port, checkpoint_file=tmp_path / "p.json", status_interval_s=5),
        kafka_broker,
        topics,
    )
    try:
        wait_for_port(port)
        client = sender.FluentSender("kube.var.log.containers", host="127.0.0.1", port=port)
        kubernetes = {"pod_name": "jupyter-frank", "namespace_name": "dev", "container_name": "notebook"}
        records = [{"log": event_line(n), "stream": "stderr", "kubernetes": kubernetes} for n in range(200)]
        for record in records:
            assert client.emit("notebook", record), client.last_error
        client.close()
        stdin_lines = [event_line(n) for n in range(1000, 1100)]
        piped = subprocess.run(
            [sys.executable, "-m", "pioneer_telemetry", "collect", "--stdin", "--pod", "jupyter-gina"],
            input="".join(line + "\n" for line in stdin_lines),
            env=dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=kafka_broker, PIONEER_TOPICS_RAW=topics.raw),
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert piped.returncode == 0, piped.stderr
        messages = consume_envelopes(kafka_broker, topics.raw, expected=300)
    finally:
        collector.stop()
    by_pod: dict[str, list[str]] = {}
    for message in messages:
        by_pod.setdefault(message["kubernetes"]["pod_name"], []).append(message["log"])
    assert by_pod.keys() == {"jupyter-frank", "jupyter-gina"}
    assert by_pod["jupyter-gina"] == stdin_lines
    assert len(by_pod["jupyter-frank"]) == len(records)
    assert by_pod["jupyter-frank"] == [r["log"] for r in records]


def test_simulate_to_kafka_goes_through_the_collectors_redaction(
    kafka_broker: str, topics: TopicSettings, tmp_path: Path
) -> None:
    truth_path = tmp_path / "truth.json"
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=kafka_broker, PIONEER_TOPICS_RAW=topics.raw)
    subprocess.run(
        [sys.executable, "-m", "pioneer_telemetry", "simulate", "--users", "3", "--seed", "3", "--duration", "120",
         "--rate", "0", "--kafka", "--truth", str(truth_path)],
        env=env, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    truth = json.loads(truth_path.read_text())
    messages = consume_envelopes(kafka_broker, topics.raw, expected=truth["total"])
    assert len(messages) == truth["total"]  # the pre-filter keeps exactly the event lines
    assert len({(m["source"]["id"], m["source"]["offset"]) for m in messages}) == truth["total"]
    raw = json.dumps(messages)
    assert truth["secret_values"]
    assert not [secret for secret in truth["secret_values"] if secret in raw]


@pytest.mark.parametrize("record_lines", [100, 1])
def test_records_carry_lines_of_one_source_or_one_bare_envelope(
    kafka_broker: str, topics: TopicSettings, tmp_path: Path, record_lines: int
) -> None:
    """Default: a record is a JSON array of up to `record_lines` envelopes of one file, in order;
    `record_lines=1`: one bare envelope per record, exactly Fluent Bit's kafka output."""
    log_dir = tmp_path / "containers"
    log_dir.mkdir()
    lines = {pod: [event_line(n) for n in range(250)] for pod in ("jupyter-hana", "jupyter-ivan")}
    for pod, pod_lines in lines.items():
        (log_dir / kubelet_name(pod)).write_text("".join(cri(line) for line in pod_lines))
    settings = settings_for(log_dir, tmp_path, record_lines=record_lines)
    collector = CollectorThread(settings, kafka_broker, topics)
    try:
        records = consume(
            kafka_broker, topics.raw, expected=500 // record_lines, decode=lambda v: [json.loads(v)]
        )
    finally:
        collector.stop()
    if record_lines == 1:
        assert all(
            isinstance(r, dict) and set(r) == {"log", "stream", "time", "kubernetes", "source"}
            for r in records
        )
        records = [[r] for r in records]
    assert all(isinstance(r, list) and 0 < len(r) <= record_lines for r in records)
    assert all(len({e["source"]["id"] for e in r}) == 1 for r in records)  # one source per record
    for pod, pod_lines in lines.items():
        mine = [e for r in records for e in r if e["kubernetes"]["pod_name"] == pod]
        assert [e["log"] for e in mine] == pod_lines  # every line, once, in order
        assert [e["source"]["offset"] for e in mine] == sorted(e["source"]["offset"] for e in mine)
