"""The Faust worker against a real broker: its aggregates equal the simulator's ground truth, with one
worker, with two, and across a kill -9; malformed lines end as dead letters and the worker goes on."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import signal
import time
import urllib.request
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faust.stores.rocksdb import Store as RocksDBStore
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from rocksdict import AccessType, Options, Rdict

from collector.metrics import COLLECTOR_METRICS
from streams.privacy import DEFAULT_ENVIRON_ALLOWLIST
from streams.topics import TopicSettings
from streams.worker import SOURCES, WINDOW_TABLES
from tests.clock import epoch_ms, iso, recent_hour
from tests.helpers import CollectorThread, PacedLogs, WorkerProcess, consume, settings_for, worker_env
from tests.truth import all_counted, assert_equals_truth, collect, iso_ms, simulate, truth_range

pytestmark = pytest.mark.kafka

PERSISTED_OFFSET_KEY = RocksDBStore.offset_key


def scrape(worker: WorkerProcess) -> dict[str, Metric]:
    """What Prometheus scrapes from the worker's /metrics (no token), by metric family."""
    with urllib.request.urlopen(f"{worker.url}/metrics", timeout=10) as response:
        return {f.name: f for f in text_string_to_metric_families(response.read().decode())}


def assert_metrics_equal_truth(worker: WorkerProcess, truth: dict[str, Any]) -> None:
    """What Prometheus scrapes from /metrics (no token) equals the simulator's truth."""
    families = scrape(worker)
    events = {
        s.labels["event_name"]: s.value
        for s in families["pioneer_events"].samples
        if s.name.endswith("_total")
    }
    assert events == truth["by_event"]
    assert {s.labels["namespace"] for s in families["pioneer_events"].samples} == {"dev"}
    failures = sum(
        s.value for s in families["pioneer_execution_failures"].samples if s.name.endswith("_total")
    )
    assert failures == sum(truth["failures_by_error"].values())
    active = {s.labels["period"]: s.value for s in families["pioneer_active_users"].samples}
    assert active == {"24h": len(truth["by_user"])}  # the run was three hours ago: none in the last hour
    assert sum(s.value for s in families["pioneer_consumer_lag"].samples) == 0
    for name in ("late_events", "backfilled_events", "expired_events", "duplicate_lines", "dead_letters"):
        assert families[f"pioneer_{name}"].samples[0].value == 0, name
    assert not any("user" in s.labels for f in families.values() for s in f.samples)  # no per-user labels
    assert_grafana_dashboard_queries_exported_metrics({s.name for f in families.values() for s in f.samples})


def raw_offsets(bootstrap: str, app_id: str, topics: TopicSettings) -> dict[int, int] | None:
    """The raw topic's end offsets if the worker's group (its app id) has committed every partition up to
    them, else None."""

    async def read() -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        tps = [TopicPartition(topics.raw, p) for p in range(topics.partitions)]
        consumer, admin = (
            AIOKafkaConsumer(bootstrap_servers=bootstrap),
            AIOKafkaAdminClient(bootstrap_servers=bootstrap),
        )
        await consumer.start()
        await admin.start()
        try:
            committed = await admin.list_consumer_group_offsets(app_id, partitions=tps)
            ends = await consumer.end_offsets(tps)
            return ends, {tp: max(committed[tp].offset, 0) if tp in committed else 0 for tp in tps}
        finally:
            await consumer.stop()
            await admin.close()

    ends, committed = asyncio.run(read())
    return {tp.partition: end for tp, end in ends.items()} if committed == ends else None


def assert_stores_hold_their_changelogs_to_the_end(
    bootstrap: str, app_id: str, topics: TopicSettings, data_dir: Path
) -> None:
    """Every table partition's RocksDB remembers its changelog's last record as read (Faust's persisted
    offset, which the worker sets from its batch sends): a restart replays nothing it already holds."""
    changelogs = [f"{app_id}-{table}-changelog" for table in (*WINDOW_TABLES, SOURCES)]

    async def ends() -> dict[TopicPartition, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            tps = [TopicPartition(t, p) for t in changelogs for p in range(topics.partitions)]
            return await consumer.end_offsets(tps)
        finally:
            await consumer.stop()

    written = {tp: end for tp, end in asyncio.run(ends()).items() if end > 0}
    assert len(written) > topics.partitions, written  # minute windows and sources in most partitions
    for tp, end in written.items():
        table = tp.topic.removeprefix(f"{app_id}-").removesuffix("-changelog")
        [path] = data_dir.glob(f"**/{table}-{tp.partition}.db")
        store = Rdict(str(path), options=Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            assert store.get(PERSISTED_OFFSET_KEY) == str(end - 1).encode(), tp
        finally:
            store.close()


GRAFANA_DASHBOARD = (
    Path(__file__).resolve().parents[1] / "deploy/helm/pioneer-telemetry/dashboards/pioneer-telemetry.json"
)


def assert_grafana_dashboard_queries_exported_metrics(worker_samples: set[str]) -> None:
    """The chart's Grafana dashboard parses, and every metric its queries name is one we export."""
    dashboard = json.loads(GRAFANA_DASHBOARD.read_text())
    collector = {
        s.name for metric in vars(COLLECTOR_METRICS).values() for f in metric.collect() for s in f.samples
    }
    queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    queries.append(dashboard["templating"]["list"][1]["query"]["query"])
    named = {name for query in queries for name in re.findall(r"\bpioneer_[a-z_]+", query)}
    assert named
    assert named <= worker_samples | collector, named - worker_samples - collector
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


@pytest.fixture
def app_id() -> str:
    return f"pt-test-{uuid.uuid4().hex[:8]}"


def test_one_worker_equals_the_ground_truth(
    kafka_broker: str, topics: TopicSettings, tmp_path: Path, app_id: str
) -> None:
    truth = simulate(tmp_path / "logs")
    collect(kafka_broker, topics, tmp_path / "logs", tmp_path)
    worker = WorkerProcess(
        worker_env(kafka_broker, topics, app_id), tmp_path / "w1", tmp_path / "w1.log"
    ).start()
    try:
        worker.wait_until(all_counted(truth), what="all events counted")
        assert_equals_truth(worker, truth)
        worker.wait_until(
            lambda _: raw_offsets(kafka_broker, app_id, topics) is not None,
            what="every counted record committed",
        )
        events = consume(kafka_broker, topics.events, expected=truth["total"])
        assert Counter(e["event_name"] for e in events) == Counter(truth["by_event"])
        assert not any(secret in json.dumps(events) for secret in truth["secret_values"])
        aggregates = consume(kafka_broker, topics.aggregates, expected=1)
        assert all(m.get("namespaces") for m in aggregates)  # closed minute windows were published
        assert_metrics_equal_truth(worker, truth)

        def stream_times(w: WorkerProcess) -> dict[str, Any]:
            partitions = w.get("health")["partitions"]
            return {p: (i["stream_time_ms"], i["held_from_ms"]) for p, i in partitions.items()}

        before = stream_times(worker)
        latest = max(time for time, _ in before.values() if time)
        assert iso_ms(truth["end"]) - 60_000 < latest < iso_ms(truth["end"]) + 1000  # the last events' time
        worker.kill(signal.SIGTERM)
        assert_stores_hold_their_changelogs_to_the_end(kafka_broker, app_id, topics, tmp_path / "w1")
        worker.start()  # nothing new to process: stream time and retention come back from the state
        worker.wait_until(lambda w: stream_times(w) == before, what="the same stream time after a restart")
    finally:
        worker.kill(signal.SIGTERM)


def test_a_long_poll_of_changes_answers_as_soon_as_a_batch_is_counted(
    kafka_broker: str, topics: TopicSettings, tmp_path: Path, app_id: str
) -> None:
    """/changes holds the request until the aggregates change (or wait_s passes), so a reader sees new
    counts without a poll interval's delay."""
    truth = simulate(tmp_path / "logs", users=2, minutes=2, seed=13)
    worker = WorkerProcess(
        worker_env(kafka_broker, topics, app_id), tmp_path / "w1", tmp_path / "w1.log"
    ).start()
    try:
        worker.wait_until(lambda w: w.get("health")["partitions"], what="partitions assigned")
        first = worker.get("changes")  # no token yet: answered at once
        assert first["changed"]
        quiet = time.monotonic()
        assert worker.get("changes", after=first["token"], wait_s=1)["changed"] is False
        assert time.monotonic() - quiet >= 0.9  # held for wait_s: nothing changed
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            asked = time.monotonic()
            waiting = pool.submit(worker.get, "changes", after=first["token"], wait_s=25)
            time.sleep(0.5)
            assert not waiting.done()
            collect(kafka_broker, topics, tmp_path / "logs", tmp_path)
            answer = waiting.result(timeout=30)
        assert answer["changed"]  # False had wait_s run out
        assert time.monotonic() - asked < 24
        assert worker.get("overview", **truth_range(truth))["current"]["events"] > 0
        assert worker.get("changes", after="garbled!")["changed"]  # a bad token is "seen nothing"
    finally:
        worker.kill(signal.SIGTERM)


def test_command_line_exporter_lines_lose_nothing_through_the_edge(
    kafka_broker: str, topics: TopicSettings, tmp_path: Path, app_id: str
) -> None:
    """jupyterlab-pioneer's command_line_exporter prints dict reprs; in docker json-file files under kubelet
    names, collected, redacted at the edge, parsed: every event counts, environments are cut to the
    allow-list, no secret and no dead letter."""
    truth = simulate(tmp_path / "logs", "--exporter", "command_line", "--framing", "docker")
    assert truth["by_event"]["NotebookOpenEvent"] > 0
    collect(kafka_broker, topics, tmp_path / "logs", tmp_path)
    worker = WorkerProcess(
        worker_env(kafka_broker, topics, app_id), tmp_path / "w1", tmp_path / "w1.log"
    ).start()
    try:
        worker.wait_until(all_counted(truth), what="all events counted")
        assert_equals_truth(worker, truth)
        assert worker.get("health")["last_24h"]["dead_letters"] == 0
        events = consume(kafka_broker, topics.events, expected=truth["total"])
        assert Counter(e["event_name"] for e in events) == Counter(truth["by_event"])
        opened = [e["info"]["environ"] for e in events if e["event_name"] == "NotebookOpenEvent"]
        assert all(environ and set(environ) <= DEFAULT_ENVIRON_ALLOWLIST for environ in opened)
        assert not any(secret in json.dumps(events) for secret in truth["secret_values"])
        assert consume(kafka_broker, topics.deadletter, expected=0, timeout_s=5) == []
    finally:
        worker.kill(signal.SIGTERM)


def test_two_workers_share_the_partitions_and_both_answer_everything(
    kafka_broker: str, topics: TopicSettings, tmp_path: Path, app_id: str
) -> None:
    truth = simulate(tmp_path / "logs", users=6, seed=11)
    env = worker_env(kafka_broker, topics, app_id)
    first = WorkerProcess(env, tmp_path / "w1", tmp_path / "w1.log").start()
    second = WorkerProcess(env, tmp_path / "w2", tmp_path / "w2.log").start()
    try:
        for worker in (first, second):
            worker.wait_until(lambda w: len(w.get("health")["workers"]) == 2, what="two workers in the group")
        collect(kafka_broker, topics, tmp_path / "logs", tmp_path)
        for worker in (first, second):
            worker.wait_until(all_counted(truth), what="all events counted")
            assert_equals_truth(worker, truth)
        owned = [set(w.get("local/health")["partitions"]) for w in (first, second)]
        assert owned[0]
        assert owned[1]
        assert not owned[0] & owned[1]
    finally:
        first.kill(signal.SIGTERM)
        second.kill(signal.SIGTERM)


def test_kill_9_and_restart_neither_loses_nor_double_counts(
    kafka_broker: str, topics: TopicSettings, tmp_path: Path, app_id: str
) -> None:
    truth = simulate(tmp_path / "logs", users=6, minutes=10, seed=5)
    env = worker_env(kafka_broker, topics, app_id) | {"PIONEER_WORKER_BATCH_SIZE": "200"}
    worker = WorkerProcess(env, tmp_path / "w1", tmp_path / "w1.log").start()
    collect_thread = CollectorThread(settings_for(tmp_path / "logs", tmp_path), kafka_broker, topics)
    try:
        worker.wait_until(lambda w: w.get("overview", **truth_range(truth))["current"]["events"] > 1000,
                          what="part of the events counted")  # fmt: skip
        worker.kill(signal.SIGKILL)
        worker.start()  # same data dir: RocksDB state plus changelog recovery
        worker.wait_until(all_counted(truth), what="all events counted after the restart")
        assert_equals_truth(worker, truth)
    finally:
        collect_thread.stop()
        worker.kill(signal.SIGTERM)


@pytest.mark.parametrize(
    "leave",
    [signal.SIGTERM, signal.SIGKILL],
    ids=["sigterm", "sigkill"],
)
def test_a_worker_that_leaves_and_returns_mid_stream_keeps_two_workers_exact(
    kafka_broker: str, topics: TopicSettings, tmp_path: Path, app_id: str, leave: signal.Signals
) -> None:
    """Its partitions go to the other worker and come back: records fetched before each hand-over are
    delivered again after the seek to the committed offset, and must count once."""
    truth = simulate(tmp_path / "staged", users=8, minutes=10, seed=3)
    env = worker_env(kafka_broker, topics, app_id)
    leaving = WorkerProcess(env, tmp_path / "w1", tmp_path / "w1.log").start()
    staying = WorkerProcess(env, tmp_path / "w2", tmp_path / "w2.log").start()
    logs = PacedLogs(tmp_path / "staged", tmp_path / "logs")
    collect_thread = CollectorThread(settings_for(tmp_path / "logs", tmp_path), kafka_broker, topics)
    span = truth_range(truth)
    try:
        for worker in (leaving, staying):
            worker.wait_until(lambda w: len(w.get("health")["workers"]) == 2, what="two workers in the group")
        logs.start()
        staying.wait_until(lambda w: w.get("overview", **span)["current"]["events"] > truth["total"] * 0.3,
                           what="a third of the events counted")  # fmt: skip
        leaving.kill(leave)
        staying.wait_until(
            lambda w: len(w.get("health")["workers"]) == 1, what="the other worker's partitions"
        )
        time.sleep(3)
        leaving.start()
        assert logs.done.wait(timeout=120)
        for worker in (leaving, staying):
            worker.wait_until(all_counted(truth), timeout_s=180, what="all events counted")
            assert_equals_truth(worker, truth)
    finally:
        collect_thread.stop()
        leaving.kill(signal.SIGTERM)
        staying.kill(signal.SIGTERM)


def test_malformed_lines_become_dead_letters_and_the_worker_goes_on(
    kafka_broker: str, topics: TopicSettings, tmp_path: Path, app_id: str
) -> None:
    start = recent_hour()
    event_ms = epoch_ms(start) + 1000
    good = (
        f"{start:%Y-%m-%d %H:%M}:01,000      INFO   20 jupyter_jupyterlab_pioneer_config: "
        f'{{"eventDetail": {{"eventName": "NotebookSaveEvent", "eventTime": {event_ms}, "eventInfo": null}}, '
        '"notebookState": {"sessionID": "s1", "notebookPath": "a.ipynb", "notebookContent": null}}'
    )
    bad = {
        "invalid_json": good[:120],
        "schema_violation": good.replace(str(event_ms), '"soon"'),
        "invalid_json ": good.replace('"eventInfo"', "'eventInfo'"),
    }
    kubernetes = {"pod_name": "jupyter-zoe", "namespace_name": "dev", "container_name": "notebook"}

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_broker)
        await producer.start()
        try:
            for n, line in enumerate([good, *bad.values(), good.replace("s1", "s2")]):
                envelope = {"log": line, "stream": "stderr", "time": iso(start + timedelta(seconds=1)),
                            "kubernetes": kubernetes, "source": {"id": "zoe.log", "offset": n * 1000}}  # fmt: skip
                await producer.send_and_wait(topics.raw, json.dumps(envelope).encode(), key=b"jupyter-zoe")
            await producer.send_and_wait(topics.raw, b"\xff not even json", key=b"jupyter-zoe")
        finally:
            await producer.stop()

    asyncio.run(produce())
    worker = WorkerProcess(
        worker_env(kafka_broker, topics, app_id), tmp_path / "w", tmp_path / "w.log"
    ).start()
    try:
        span = {"from_ms": epoch_ms(start), "to_ms": epoch_ms(start) + 60_000}
        worker.wait_until(lambda w: w.get("overview", **span)["current"]["events"] == 2, what="good events")
        dead = consume(kafka_broker, topics.deadletter, expected=3)
        assert sorted(d["reason"] for d in dead) == ["invalid_json", "invalid_json", "schema_violation"]
        assert {d["source"]["offset"] for d in dead} == {1000, 2000, 3000}
        health = worker.wait_until(lambda w: w.get("health")["last_24h"]["dead_letters"] == 3 and w.get("health"),
                                   what="dead letters counted")  # fmt: skip
        assert health["lag"] == 0
        assert health["crashes"] == {}  # bad input never crashes the agent
    finally:
        worker.kill(signal.SIGTERM)


def test_a_worker_started_on_a_backlog_counts_it_in_full_batches(
    kafka_broker: str, topics: TopicSettings, tmp_path: Path, app_id: str
) -> None:
    """Records reach a starting worker's stream a few at a time: without waiting for the backlog Kafka
    reports, it counted its first second in batches of two records, a quarter slower than in full ones."""
    start, records, per_record = recent_hour(), 400, 100
    event_ms = epoch_ms(start) + 1000

    def envelope(n: int) -> dict[str, Any]:
        line = (
            f"{start:%Y-%m-%d %H:%M}:01,000      INFO   20 jupyter_jupyterlab_pioneer_config: "
            f'{{"eventDetail": {{"eventName": "NotebookSaveEvent", "eventTime": {event_ms + n % 50_000}, '
            f'"eventInfo": null}}, "notebookState": {{"sessionID": "s{n % 40}", "notebookPath": "a.ipynb", '
            '"notebookContent": null}}'
        )
        return {"log": line, "stream": "stderr", "time": iso(start + timedelta(seconds=1)),
                "kubernetes": {"pod_name": f"jupyter-u{n % 16}", "namespace_name": "dev"},
                "source": {"id": f"u{n % 16}.log", "offset": n}}  # fmt: skip

    async def produce() -> None:  # as our collector writes them: arrays of one source's lines, zstd
        producer = AIOKafkaProducer(bootstrap_servers=kafka_broker, compression_type="zstd", linger_ms=20)
        await producer.start()
        try:
            for r in range(records):
                lines = [envelope(r % 16 + 16 * (r // 16 * per_record + i)) for i in range(per_record)]
                await producer.send(topics.raw, json.dumps(lines).encode(), key=f"jupyter-u{r % 16}".encode())
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(produce())
    worker = WorkerProcess(
        worker_env(kafka_broker, topics, app_id), tmp_path / "w", tmp_path / "w.log"
    ).start()
    try:
        span = {"from_ms": epoch_ms(start), "to_ms": epoch_ms(start) + 60_000}
        total = records * per_record
        worker.wait_until(
            lambda w: w.get("overview", **span)["current"]["events"] == total, what="all counted"
        )
        batches = {s.name: s.value for s in scrape(worker)["pioneer_batch_records"].samples}
        assert batches["pioneer_batch_records_sum"] == records
        # a full batch holds about 100 of these records; counted two at a time at first, it took 17-21
        assert batches["pioneer_batch_records_count"] <= 12, batches
    finally:
        worker.kill(signal.SIGTERM)


def test_a_window_open_at_a_kill_9_is_published_when_it_closes_after_the_restart(
    kafka_broker: str, topics: TopicSettings, tmp_path: Path, app_id: str
) -> None:
    """Closed minute windows go to the aggregates topic. One still open when the worker was killed, and
    touched by no later event, is published once the stream time passes it after the restart."""
    start = recent_hour()
    kubernetes = {"pod_name": "jupyter-zoe", "namespace_name": "dev", "container_name": "notebook"}

    def line(second: int) -> bytes:
        at = start + timedelta(seconds=second)
        event = {"eventDetail": {"eventName": "NotebookSaveEvent", "eventTime": epoch_ms(at), "eventInfo": None},
                 "notebookState": {"sessionID": "s1", "notebookPath": "a.ipynb", "notebookContent": None}}  # fmt: skip
        log = f"{at:%Y-%m-%d %H:%M:%S},000      INFO   20 jupyter_jupyterlab_pioneer_config: {json.dumps(event)}"
        envelope = {"log": log, "stream": "stderr", "time": iso(at), "kubernetes": kubernetes,
                    "source": {"id": "zoe.log", "offset": second * 1000}}  # fmt: skip
        return json.dumps(envelope).encode()

    async def produce(*seconds: int) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_broker)
        await producer.start()
        try:
            for second in seconds:
                await producer.send_and_wait(topics.raw, line(second), key=b"jupyter-zoe")
        finally:
            await producer.stop()

    async def committed() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(app_id)
        finally:
            await admin.close()
        return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topics.raw and meta.offset > 0)

    span = {"from_ms": epoch_ms(start), "to_ms": epoch_ms(start) + 3_600_000}
    asyncio.run(produce(1, 2, 3))  # all in the first minute: open while the stream time stays there
    worker = WorkerProcess(
        worker_env(kafka_broker, topics, app_id), tmp_path / "w", tmp_path / "w.log"
    ).start()
    try:
        worker.wait_until(lambda w: w.get("overview", **span)["current"]["events"] == 3, what="3 events")
        worker.wait_until(lambda _: asyncio.run(committed()) == 3, what="their offsets committed")
        worker.kill(signal.SIGKILL)
        worker.start()
        asyncio.run(produce(190))  # minute 3: the stream time passes the first minute's end + grace
        worker.wait_until(lambda w: w.get("overview", **span)["current"]["events"] == 4, what="4 events")
        published = consume(kafka_broker, topics.aggregates, expected=1, timeout_s=30)
        counts = [sum(sum(part["events"].values()) for part in w["namespaces"].values()) for w in published]
        assert counts == [3]  # the first minute, once; the fourth is still open
    finally:
        worker.kill(signal.SIGTERM)
