"""Worker throughput and end-to-end latency: raw topic -> one Faust worker -> read API.

Input: the simulator's lines (50 users, seed 1, `--events N`, fixed start) turned into the collector's
envelopes (`log`, `stream`, `time`, `kubernetes`, `source`; event lines only, secrets redacted as the
collector does, keyed by pod and placed with Kafka's default partitioner) and produced to a fresh raw
topic with `send_batch` before anything is timed.

(a) throughput: per repeat a fresh `pioneer-telemetry worker` process (new app id and data dir, so it
    reads the whole topic), timed from the moment its `/api/v1/health` answers until `/api/v1/overview`
    over the simulated range counts all N events and `/api/v1/health` reports lag 0 (polled every
    0.1 s). The counts must then equal the simulator's ground truth (total, per event name, users,
    sessions; no late, duplicate or dead-lettered events), else the run prints FAILED. Also reported:
    worker start-up (spawn to health answering), the time to the first counted event, and the CPU
    seconds of worker and broker over the timed interval.
(b) latency: one more worker on fresh topics; envelopes paced at `--rate` (5,000/s) whose log time is
    "now", for `--duration` seconds per repeat (after a 3 s warm-up). Every 50 ms one of them is a
    marker event with a unique session id (user `bench-marker`, partitions in turn); a poller waits on
    `/api/v1/changes` (answered as soon as a batch is counted), asks `/api/v1/users/bench-marker` and
    notes when each marker's session first appears. Latency = that response's arrival - the marker's
    hand-over to the producer (an upper bound with two requests of resolution); the poller asks only
    while a marker is awaited. Reports p50 / p99 / max and the backlog when producing stopped (records
    produced minus processed: a worker slower than the offered rate falls behind, and latency grows
    with the run); a marker never seen is a FAILED.
(c) reference: a plain aiokafka consumer over the same pre-filled topic, `orjson.loads` of the
    envelope, `LineParser.parse`, and a dict count by event name, in this process.

A worker that exits, or whose agent crashes (Faust logs "Crashed reason=" and restarts the agent,
while the API keeps answering), fails its run with that reason; the run is then tried once more
(throughput: a fresh worker; latency: the same worker restarted, if no run was measured yet).

    .venv/bin/python bench/bench_worker.py [--events 500000] [--repeat 3] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from benchlib import (
    SIM_START,
    STREAM,
    Records,
    Results,
    create_topics,
    load_average,
    private_broker,
    process_cpu_seconds,
    produce,
    rfc3339,
    send_records,
)

from collector.edge import redact_line
from collector.lines import kubernetes_metadata
from collector.settings import CollectorSettings
from pioneer_base.kafka_local import free_port
from simulator.records import LogLine
from simulator.settings import SimulatorSettings
from simulator.simulate import run
from streams.envelope import envelopes
from streams.identity import PodMeta
from streams.parser import LineParser
from streams.schema import is_event
from streams.topics import TopicSettings

PARTITIONS = 8
MINUTE_MS = 60_000
HOUR_MS = 3_600_000
MARKER_USER = "bench-marker"
MARKER_EVERY_S = 0.05  # one marker event per 50 ms
LINGER_S = CollectorSettings().linger_ms / 1000  # the feed sends what collected meanwhile, as the collector
WAIT_S = 1.0  # the latency poller's longest wait on /changes
GIVE_UP_S = 30  # markers not seen are lost if none showed up for this long after producing ended
POOL_SIZE = 20_000  # event lines kept as templates for the latency run
ASCTIME_CHARS = len("2026-01-05 09:00:00,000")  # the log format starts with %(asctime)s
EVENT_TIME = re.compile(r'"eventTime": \d+')
CRASHED = b"Crashed reason="  # how Faust logs an agent that raised


RECORD_LINES = CollectorSettings().record_lines

# -- input ----------------------------------------------------------------------------------------


def array_record(envelopes: list[bytes]) -> bytes:
    """Envelopes as the collector sends them: a JSON array per Kafka record."""
    return b"[" + b",".join(envelopes) + b"]"


class EnvelopeSink:
    """A simulator sink producing what the collector would: envelopes of event lines, by partition,
    consecutive lines of one pod's file sharing a record (up to the collector's `record_lines`)."""

    def __init__(self, partitions: int) -> None:
        self.records: Records = {p: [] for p in range(partitions)}
        self._filling: dict[str, list[bytes]] = {}  # log file -> envelopes of its record being built
        self.pool: list[tuple[str, str]] = []  # (pod name, redacted line) templates for the latency run
        self._all = list(range(partitions))
        self._partitioner = DefaultPartitioner()
        self._offsets: dict[str, int] = {}
        self._pods: dict[str, tuple[bytes, int, dict[str, Any]]] = {}

    def write(self, line: LogLine, framed: str) -> None:
        pod = line.pod
        offset = self._offsets.get(pod.log_file, 0)
        self._offsets[pod.log_file] = offset + len(framed.encode())
        if line.event is None:
            return  # the collector forwards event lines only
        known = self._pods.get(pod.log_file)
        if known is None:
            key = pod.name.encode()
            kubernetes = kubernetes_metadata(PodMeta.from_log_path(pod.log_file))
            known = self._pods[pod.log_file] = (key, self._partitioner(key, self._all, self._all), kubernetes)
        _, _, kubernetes = known
        text = redact_line(line.text)
        envelope = {
            "log": text,
            "stream": STREAM,
            "time": rfc3339(line.ns),
            "kubernetes": kubernetes,
            "source": {"id": f"/var/log/containers/{pod.log_file}#1", "offset": offset},
        }
        filling = self._filling.setdefault(pod.log_file, [])
        filling.append(orjson.dumps(envelope))
        if len(filling) >= RECORD_LINES:
            self._close_record(pod.log_file)
        if len(self.pool) < POOL_SIZE:
            self.pool.append((pod.name, text))

    def _close_record(self, log_file: str) -> None:
        key, partition, _ = self._pods[log_file]
        self.records[partition].append((key, array_record(self._filling.pop(log_file))))

    def flush(self) -> None:
        for log_file in list(self._filling):
            self._close_record(log_file)

    def close(self) -> None:
        pass


def simulate(events: int, users: int) -> tuple[EnvelopeSink, dict[str, Any]]:
    settings = SimulatorSettings(users=users, seed=1, rate=0, events=events, framing="cri", start=SIM_START)
    sink = EnvelopeSink(PARTITIONS)
    truth = run(settings, [sink])
    sink.flush()
    return sink, truth.as_dict()


def epoch_ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def truth_span(truth: dict[str, Any], size_ms: int) -> dict[str, Any]:
    """The simulated range at window size `size_ms`, as read API query parameters."""
    start, end = epoch_ms(truth["start"]), epoch_ms(truth["end"])
    return {
        "from_ms": start - start % size_ms,
        "to_ms": end - end % size_ms + size_ms,
        "resolution": "minute" if size_ms == MINUTE_MS else "hour",
    }


# -- the worker process ---------------------------------------------------------------------------


class WorkerFailed(RuntimeError):
    pass


class Worker:
    """`pioneer-telemetry worker` as a subprocess with its own app id, port and data dir."""

    def __init__(
        self, bootstrap: str, topics: TopicSettings, work: Path, name: str, extra_env: dict[str, str]
    ) -> None:
        self.name = name
        self.port = free_port()
        self.data_dir = work / name
        self.log_path = work / f"{name}.log"
        self.env = (
            {k: v for k, v in os.environ.items() if not k.startswith("PIONEER_")}
            | {
                "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "PIONEER_TOPICS_RAW": topics.raw,
                "PIONEER_TOPICS_EVENTS": topics.events,
                "PIONEER_TOPICS_DEADLETTER": topics.deadletter,
                "PIONEER_TOPICS_AGGREGATES": topics.aggregates,
                "PIONEER_TOPICS_PARTITIONS": str(topics.partitions),
                "PIONEER_WORKER_APP_ID": f"bench-{name}-{uuid.uuid4().hex[:8]}",
            }
            | extra_env
        )
        self.process: subprocess.Popen[bytes] | None = None
        self._log_read = 0  # how far the log was searched for agent crashes

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        command = [sys.executable, "-m", "pioneer_telemetry", "worker", "--web-port", str(self.port),
                   "--data-dir", str(self.data_dir)]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def get(self, endpoint: str, /, **params: Any) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{endpoint}?{query}", timeout=30) as response:
            return json.load(response)

    def alive(self) -> None:
        """Raises WorkerFailed if the process exited or its agent crashed (Faust restarts a crashed
        agent, but the worker may never make progress again while its API keeps answering)."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise WorkerFailed(f"worker {self.name} exited:\n{self.log_tail()}")
        with self.log_path.open("rb") as log:
            log.seek(self._log_read)
            new = log.read()
        self._log_read += new.rfind(b"\n") + 1
        crash = new.find(CRASHED)
        if crash >= 0:
            line = new[crash : new.find(b"\n", crash)].decode(errors="replace")
            raise WorkerFailed(f"worker {self.name}: agent {line[:300]}")

    def wait(self, check: Callable[[Worker], Any], timeout_s: float, interval_s: float = 0.05) -> Any:
        """Poll `check` until it returns something truthy; returns it."""
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            self.alive()
            with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError):
                if result := check(self):
                    return result
            time.sleep(interval_s)
        raise WorkerFailed(
            f"worker {self.name}: condition not reached in {timeout_s:.0f} s\n{self.log_tail()}"
        )

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def running(worker: Worker) -> Iterator[Worker]:
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


def caught_up(partitions: int) -> Callable[[Worker], bool]:
    """Every partition is assigned and read to its end (an empty one has highwater 0). Asked of the
    worker's own `/local/health`: `/health` also totals the wall clock's last day of minute windows,
    which costs a busy worker tens of milliseconds a call, too much to ask every 50 ms."""

    def check(worker: Worker) -> bool:
        health = worker.get("local/health")
        parts = health["partitions"].values()
        return len(parts) == partitions and all(p["lag"] == 0 or p["highwater"] == 0 for p in parts)

    return check


# -- (a) throughput -------------------------------------------------------------------------------


def check_truth(worker: Worker, truth: dict[str, Any]) -> list[str]:
    """Differences between the API's overview of the simulated range and the ground truth."""
    current = worker.get("overview", **truth_span(truth, MINUTE_MS))["current"]
    expected = {
        "events": truth["total"],
        "events_by_name": dict(sorted(truth["by_event"].items())),
        "active_users": len(truth["by_user"]),
        "active_sessions": len(truth["by_session"]),
        "executions": truth["executions"],
        "failures": truth["failures"],
        "late": 0,
        "duplicates": 0,
        "dead_letters": 0,
    }
    return [f"{k}: API {current[k]!r} != truth {v!r}" for k, v in expected.items() if current[k] != v]


def steady_rate(progress: list[tuple[float, int, float]], total: int) -> dict[str, float] | None:
    """Events/s and events per CPU-second between 10% and 90% counted: the worker at work, without
    its start-up (group join, store opening) or the last poll's rounding."""
    low = next((p for p in progress if p[1] >= total * 0.1), None)
    high = next((p for p in progress if p[1] >= total * 0.9), None)
    if low is None or high is None or high[0] <= low[0] or high[2] <= low[2]:
        return None
    events = high[1] - low[1]
    return {"events_per_s": events / (high[0] - low[0]), "events_per_cpu_s": events / (high[2] - low[2])}


def measure_throughput(
    bootstrap: str,
    broker_pid: int,
    topics: TopicSettings,
    work: Path,
    *,
    name: str,
    truth: dict[str, Any],
    extra_env: dict[str, str],
    say: Callable[[str], None],
) -> dict[str, Any]:
    total = truth["total"]
    progress_span = truth_span(truth, HOUR_MS)  # few windows: cheap to ask for often
    worker = Worker(bootstrap, topics, work, name, extra_env)
    spawned = time.perf_counter()
    with running(worker):
        worker.wait(lambda w: w.get("health") is not None, timeout_s=120)
        ready = time.perf_counter()
        cpu0, broker0 = process_cpu_seconds(worker.pid), process_cpu_seconds(broker_pid)
        first: float | None = None
        next_report = ready + 10
        progress: list[tuple[float, int, float]] = []  # (time, events counted, worker CPU seconds)

        def finished(w: Worker) -> float | None:
            nonlocal first, next_report
            counted = w.get("overview", **progress_span)["current"]["events"]
            now = time.perf_counter()
            progress.append((now, counted, process_cpu_seconds(worker.pid)))
            if counted and first is None:
                first = now
            if now >= next_report:
                say(f"    {name}: {counted} of {total} counted after {now - ready:.0f} s")
                next_report = now + 10
            return now if counted >= total and caught_up(PARTITIONS)(w) else None

        timeout_s = 120 + total / 250  # generous: a loaded machine slows everything down
        try:
            done = worker.wait(finished, timeout_s=timeout_s, interval_s=0.1)
        except WorkerFailed as failure:
            return {"problems": [str(failure).split("\n", 1)[0]]}
        cpu, broker_cpu = process_cpu_seconds(worker.pid) - cpu0, process_cpu_seconds(broker_pid) - broker0
        problems = check_truth(worker, truth)
    return {
        "startup_s": ready - spawned,
        "wall_s": done - ready,
        "first_s": (first or done) - ready,
        "steady": steady_rate(progress, total),
        "cpu_s": cpu,
        "broker_cpu_s": broker_cpu,
        "problems": problems,
    }


# -- (c) reference --------------------------------------------------------------------------------


async def reference_loop(bootstrap: str, topic: str, partitions: int, total: int) -> dict[str, Any]:
    """Consume + decode + parse + count, nothing else: what one Python process can do at best."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        parser = LineParser()
        pods: dict[str, PodMeta] = {}
        counts: dict[str, int] = {}
        seen = 0
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        while seen < total:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for messages in batch.values():
                for message in messages:
                    for envelope in envelopes(message.value):
                        seen += 1
                        kubernetes = envelope["kubernetes"]
                        pod = pods.get(kubernetes["pod_name"])
                        if pod is None:
                            pod = pods[kubernetes["pod_name"]] = PodMeta.from_fluent_bit(kubernetes)
                        source = envelope["source"]
                        result = parser.parse(
                            envelope["log"], source["id"], source["offset"], pod, envelope["time"]
                        )
                        if is_event(result):
                            counts[result["event_name"]] = counts.get(result["event_name"], 0) + 1
        wall = time.perf_counter() - started
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        await consumer.stop()
    cpu = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "counts": counts}


# -- (b) latency ----------------------------------------------------------------------------------


def asctime(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms // 1000)) + f",{ms % 1000:03d}"


@dataclass
class Feed:
    """Envelopes of events logged "now": simulator lines re-stamped, and marker events."""

    pool: list[tuple[str, str]]
    partitions: int
    next_line: int = 0
    produced: int = 0  # records in the topic, all runs
    offsets: dict[str, int] = field(default_factory=dict)
    _placed: dict[str, tuple[bytes, int, dict[str, Any]]] = field(default_factory=dict)

    def _source_offset(self, source: str) -> int:
        self.offsets[source] = offset = self.offsets.get(source, -1) + 1
        return offset

    def _envelope(self, line: str, pod: str, source: str, now_ms: int) -> bytes:
        placed = self._placed.get(pod)
        if placed is None:
            key = pod.encode()
            every = list(range(self.partitions))
            kubernetes = kubernetes_metadata(PodMeta(pod=pod, namespace="dev", container="notebook"))
            placed = self._placed[pod] = (key, DefaultPartitioner()(key, every, every), kubernetes)
        return orjson.dumps(
            {
                "log": line,
                "stream": STREAM,
                "time": rfc3339(now_ms * 1_000_000),
                "kubernetes": placed[2],
                "source": {"id": source, "offset": self._source_offset(source)},
            }
        )

    def background(self, now_ms: int) -> tuple[int, bytes, bytes]:
        pod, text = self.pool[self.next_line % len(self.pool)]
        self.next_line += 1
        rest = EVENT_TIME.sub(f'"eventTime": {now_ms - 20}', text[ASCTIME_CHARS:], count=1)
        value = self._envelope(asctime(now_ms) + rest, pod, f"bench-latency/{pod}", now_ms)
        key, partition, _ = self._placed[pod]
        return partition, key, value

    def marker(self, session: str, number: int, now_ms: int) -> tuple[int, bytes, bytes]:
        template = self.pool[0][1]
        prefix = template[ASCTIME_CHARS : template.index('{"eventDetail"')]
        line = (
            f'{asctime(now_ms)}{prefix}{{"eventDetail": {{"eventName": "NotebookSaveEvent", '
            f'"eventTime": {now_ms - 20}, "eventInfo": null}}, "notebookState": {{"sessionID": '
            f'"{session}", "notebookPath": "bench/marker.ipynb", "notebookContent": null}}}}'
        )
        partition = number % self.partitions
        pod = f"jupyter-{MARKER_USER}"
        value = self._envelope(line, pod, f"bench-latency/marker-{partition}", now_ms)
        return partition, pod.encode(), value


@dataclass
class LatencyRun:
    latencies_ms: list[float]
    lost: int
    produced: int
    seconds: float
    worker_cpu_s: float
    backlog: int
    poll_errors: list[str]


async def poll_markers(
    url: str, sent: dict[str, float], seen: dict[str, float], done: asyncio.Event
) -> list[str]:
    """Note when each sent marker's session first shows in the API; stop when all did, or when none
    showed for `GIVE_UP_S` after producing ended. Waits on `/changes` (answered as soon as a batch is
    counted) between reads, so the harness adds one request's time, not a poll interval. Returns the
    errors of failed requests."""
    errors: list[str] = []
    give_up: float | None = None
    token = ""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        while True:
            now_ms = int(time.time() * 1000)  # markers are logged now: their minute or the one before
            params = {"from_ms": now_ms - 5000, "to_ms": now_ms + 1000}
            try:
                async with session.get(
                    f"{url}/api/v1/changes", params={"after": token, "wait_s": WAIT_S}
                ) as response:
                    token = orjson.loads(await response.read())["token"]
                if all(marker in seen for marker in list(sent)) and not done.is_set():
                    continue  # nothing awaited: a query now would only take the worker's time
                async with session.get(f"{url}/api/v1/users/{MARKER_USER}", params=params) as response:
                    sessions = orjson.loads(await response.read())["sessions"]
            except (aiohttp.ClientError, TimeoutError) as error:
                errors.append(repr(error))  # a busy worker answers late; the markers are seen later
                sessions = []
                await asyncio.sleep(0.05)
            arrived = time.perf_counter()
            for marker in sessions:
                if marker in sent and marker not in seen:
                    seen[marker] = arrived
                    give_up = None
            if done.is_set():
                if len(seen) == len(sent):
                    return errors
                give_up = give_up or arrived + GIVE_UP_S
                if arrived > give_up:
                    return errors


async def processed(url: str) -> int:
    """Records the worker has processed, over all partitions (from /api/v1/health)."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.get(f"{url}/api/v1/health") as response,
    ):
        partitions = orjson.loads(await response.read())["partitions"].values()
        return sum(p["processed"] or 0 for p in partitions)


async def latency_run(
    worker: Worker, bootstrap: str, topic: str, feed: Feed, *, rate: float, duration_s: float
) -> LatencyRun:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=0, compression_type="zstd"
    )
    await producer.start()
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    run_id = f"bench-{uuid.uuid4().hex[:8]}"  # marker session ids: unique in every run
    done = asyncio.Event()
    poller = asyncio.create_task(poll_markers(worker.url, sent, seen, done))
    acks: list[asyncio.Future[Any]] = []
    produced = 0  # events
    records_produced = 0
    cpu0 = process_cpu_seconds(worker.pid)
    started = time.perf_counter()
    next_marker = 0.0
    next_send = LINGER_S
    lines: dict[tuple[int, bytes], list[bytes]] = defaultdict(list)  # lines lingering, as in the collector
    try:
        while (elapsed := time.perf_counter() - started) < duration_s:
            now_ms = int(time.time() * 1000)
            due = int(elapsed * rate) - produced
            for _ in range(due):
                partition, key, value = feed.background(now_ms)
                lines[partition, key].append(value)
            produced += due
            if elapsed >= next_marker:
                marker = f"{run_id}-{len(sent)}"
                partition, key, value = feed.marker(marker, len(sent), now_ms)
                lines[partition, key].append(value)
                sent[marker] = time.perf_counter()  # written: the collector's linger counts too
                next_marker += MARKER_EVERY_S
            if elapsed >= next_send:
                records: Records = defaultdict(list)
                for (partition, key), values in lines.items():  # a pod's lines of one linger: one record
                    records[partition].append((key, array_record(values)))
                records_produced += len(lines)
                lines.clear()
                acks += await send_records(producer, topic, records)
                next_send += LINGER_S
            await asyncio.sleep(0.005)
        seconds = time.perf_counter() - started
        cpu = process_cpu_seconds(worker.pid) - cpu0  # while producing
        await asyncio.gather(*acks)
        feed.produced += records_produced
        # the topic holds exactly what the feed produced (health's own "lag" uses the consumer's
        # last-fetched highwater, which lags behind while Faust pauses fetching)
        backlog = feed.produced - await processed(worker.url)
        done.set()
        errors = await poller
    finally:
        poller.cancel()
        await producer.stop()
    latencies = sorted((seen[m] - sent[m]) * 1000 for m in seen)
    return LatencyRun(latencies, len(sent) - len(seen), produced + len(sent), seconds, cpu, backlog, errors)


# -- main -----------------------------------------------------------------------------------------


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def record_throughput(results: Results, total: int, run_: dict[str, Any]) -> None:
    wall, first = run_["wall_s"], run_["first_s"]
    results.add("(a) worker events/s (ready -> all counted, lag 0)", total / wall, "events/s")
    results.add("(a) worker start-up (spawn -> health answers)", run_["startup_s"], "s")
    results.add("(a) ready -> first event counted", first, "s")
    results.add("(a) events/s after the first count", total / max(wall - first, 1e-9), "events/s")
    if run_["steady"] is not None:
        results.add(
            "(a) sustained events/s (10% -> 90% counted)",
            run_["steady"]["events_per_s"],
            "events/s",
            "50,000",
        )
        results.add(
            "(a) sustained events per worker CPU-second", run_["steady"]["events_per_cpu_s"], "events/s"
        )
    results.add("(a) worker CPU / wall (timed interval)", run_["cpu_s"] / wall, "cores")
    results.add("(a) events per worker CPU-second", total / run_["cpu_s"], "events/s")
    results.add("(a) broker CPU (timed interval)", run_["broker_cpu_s"], "s")


def bench_throughput(
    args: argparse.Namespace,
    bootstrap: str,
    broker_pid: int,
    work: Path,
    *,
    results: Results,
    say: Callable[[str], None],
) -> list[tuple[str, str]]:
    """(a) and (c), interleaved; returns event line templates for the latency runs."""
    began = time.perf_counter()
    sink, truth = simulate(args.events, args.users)
    envelopes = sum(len(r) for r in sink.records.values())
    say(f"simulated {truth['total']} events ({envelopes} envelopes) in {time.perf_counter() - began:.1f} s")
    topics = create_topics(bootstrap, "worker", PARTITIONS)
    began = time.perf_counter()
    asyncio.run(produce(bootstrap, topics.raw, sink.records))
    say(f"pre-filled {topics.raw} in {time.perf_counter() - began:.1f} s")
    pool = sink.pool
    del sink  # the envelopes are in Kafka now
    total = truth["total"]
    for repeat in range(args.repeat):
        for attempt in (1, 2):  # a failed worker is reported, and one fresh worker tries again
            name = f"w{repeat + 1}" if attempt == 1 else f"w{repeat + 1}-retry"
            run_ = measure_throughput(
                bootstrap,
                broker_pid,
                topics,
                work,
                name=name,
                truth=truth,
                extra_env=args.worker_env,
                say=say,
            )
            for problem in run_["problems"]:
                results.fail(f"throughput run {repeat + 1}, attempt {attempt}: {problem}")
            if not run_["problems"]:  # a wrong or missing answer has no speed
                record_throughput(results, total, run_)
                say(f"(a) run {repeat + 1}: {total / run_['wall_s']:,.0f} events/s ({run_['wall_s']:.1f} s, "
                    f"first count after {run_['first_s']:.1f} s, worker CPU {run_['cpu_s']:.1f} s)")  # fmt: skip
                break

        ref = asyncio.run(reference_loop(bootstrap, topics.raw, PARTITIONS, total))
        if ref["counts"] != truth["by_event"]:
            results.fail(f"reference run {repeat + 1}: counts differ from the truth")
        results.add("(c) reference: consume + parse + count", total / ref["wall_s"], "events/s")
        results.add("(c) reference CPU / wall", ref["cpu_s"] / ref["wall_s"], "cores")
        say(f"(c) run {repeat + 1}: {total / ref['wall_s']:,.0f} events/s")
    return pool


def record_latency(results: Results, run_: LatencyRun) -> str:
    p50, p99 = percentile(run_.latencies_ms, 50), percentile(run_.latencies_ms, 99)
    results.add("(b) latency p50", p50, "ms")
    results.add("(b) latency p99", p99, "ms", "< 2,000")
    results.add("(b) latency max", run_.latencies_ms[-1], "ms")
    results.add("(b) offered rate (achieved)", run_.produced / run_.seconds, "events/s")
    results.add("(b) worker CPU / wall", run_.worker_cpu_s / run_.seconds, "cores")
    results.add("(b) backlog when producing stopped", run_.backlog, "records")
    return (f"p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {run_.latencies_ms[-1]:.0f} ms over "
            f"{len(run_.latencies_ms)} markers at {run_.produced / run_.seconds:,.0f} events/s")  # fmt: skip


def bench_latency(
    args: argparse.Namespace,
    bootstrap: str,
    work: Path,
    pool: list[tuple[str, str]],
    *,
    results: Results,
    say: Callable[[str], None],
) -> None:
    """One worker for the warm-up and every latency run. If it fails before the measured runs (see
    WorkerFailed), that is reported and it is restarted once, as an orchestrator would."""
    topics = create_topics(bootstrap, "latency", PARTITIONS)
    feed = Feed(pool, PARTITIONS)
    worker = Worker(bootstrap, topics, work, "latency", args.worker_env)
    measured = False
    for attempt in (1, 2):
        with running(worker):
            try:
                worker.wait(lambda w: len(w.get("health")["partitions"]) == PARTITIONS, timeout_s=120)
                for repeat in range(-1, args.repeat):  # -1: a warm-up, not recorded
                    duration = 3.0 if repeat < 0 else args.duration
                    tag = "warm-up" if repeat < 0 else f"run {repeat + 1}"
                    run_ = asyncio.run(
                        latency_run(worker, bootstrap, topics.raw, feed, rate=args.rate, duration_s=duration)
                    )
                    worker.alive()
                    if run_.poll_errors:
                        say(f"(b) {tag}: {len(run_.poll_errors)} failed polls, e.g. {run_.poll_errors[:3]}")
                    if run_.lost or not run_.latencies_ms:
                        results.fail(f"latency {tag}: {run_.lost} of the markers never showed up")
                    if repeat >= 0 and run_.latencies_ms:
                        measured = True
                        say(f"(b) {tag}: {record_latency(results, run_)}")
                return
            except WorkerFailed as failure:
                results.fail(f"latency, attempt {attempt}: {str(failure).splitlines()[0]}")
                if measured:
                    return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=None, help="events pre-filled (default 500000)")
    parser.add_argument("--users", type=int, default=50, help="simulated users (pods)")
    parser.add_argument("--rate", type=float, default=5000, help="latency run: events/s produced")
    parser.add_argument("--duration", type=float, default=None, help="latency run: seconds (default 20)")
    parser.add_argument("--repeat", type=int, default=3, help="runs; min/median/max are reported")
    parser.add_argument("--quick", action="store_true", help="50000 events, 10 s latency runs")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--skip-latency", action="store_true", help="only (a) and (c)")
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the workers, to try settings (e.g. PRODUCER_LINGER=0.05); repeatable",
    )
    args = parser.parse_args()
    args.worker_env = dict(item.split("=", 1) for item in args.worker_env)
    args.events = args.events or (50_000 if args.quick else 500_000)
    args.duration = args.duration or (10.0 if args.quick else 20.0)
    results = Results()

    def say(text: str) -> None:
        if not args.json:
            print(text, file=sys.stderr, flush=True)

    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="pt-bench-worker-") as tmp, private_broker() as broker:
        say(f"broker {broker.bootstrap} (pid {broker.pid})")
        pool = bench_throughput(args, broker.bootstrap, broker.pid, Path(tmp), results=results, say=say)
        if not args.skip_latency:
            bench_latency(args, broker.bootstrap, Path(tmp), pool, results=results, say=say)

    config = {"events": args.events, "users": args.users, "rate": args.rate, "duration_s": args.duration,
              "repeat": args.repeat, "partitions": PARTITIONS, "worker_env": args.worker_env,
              "load_average": {"before": load_before, "after": load_average()}}  # fmt: skip
    if args.json:
        print(results.as_json(config))
    else:
        print(results.table(f"Worker: {args.events:,} events, {args.repeat} repeats, "
                            f"latency at {args.rate:,.0f} events/s for {args.duration:.0f} s",
                            [f"Load average (1/5/15 min): {load_before} before, {config['load_average']['after']} after."]))  # fmt: skip
    if results.failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
