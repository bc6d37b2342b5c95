"""Fault-injection scenarios against a real 3-broker cluster, shared by tests/test_faults.py (pytest) and
bench/bench_faults.py (which writes docs/reliability.md).

Every scenario runs the whole pipeline: simulated users' pod logs written at a steady pace into a watched
folder, the collector (a `pioneer-telemetry collect` subprocess) -> a 3-node KRaft cluster (topics with 3
replicas, min.insync.replicas 2, idempotent acks=all producers) -> two workers. A fault is injected once
the workers counted about a third of the events; when it is over ("recovered"), the read API of both
workers is polled until every minute window equals the simulator's ground truth. Measured:

- lost / double-counted: per minute window, events the truth has and the API lacks, and the reverse
  (summed over windows; taken when the API stops changing, or at the deadline);
- duplicates on the events topic: records whose event_id was already published (at-least-once replays;
  the windows must not count them twice);
- time to exact: from the recovery (or, when the fault has no end, from the fault) to both workers'
  APIs equal to the truth; and from the last line written.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pioneer_base.config import KafkaSettings
from pioneer_base.kafka_local import ClusterState, LocalCluster
from streams.topics import TopicSettings, ensure_topics, topic_specs
from tests.helpers import PacedLogs, WorkerProcess, consume, unique_topics, worker_env
from tests.truth import assert_equals_truth, iso_ms, simulate, truth_range

NODE_HEAP = "384m"
CLUSTER_SIZE = 3


# --- the cluster ------------------------------------------------------------------------------------


def start_cluster(data_dir: Path) -> LocalCluster:
    cluster = LocalCluster(data_dir)
    cluster.start(CLUSTER_SIZE, heap=NODE_HEAP, timeout_s=180)
    return cluster


class TcpProxy:
    """A loopback TCP proxy that can stall: `pause()` stops forwarding in both directions (connections
    stay open, bytes wait), `resume()` lets them through again."""

    def __init__(self, listen_port: int, target_port: int, loop: asyncio.AbstractEventLoop) -> None:
        self.listen_port, self.target_port, self.loop = listen_port, target_port, loop
        self.open = asyncio.Event()
        self.open.set()
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.listen_port)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        await self.open.wait()
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.close()
            return
        for reader, writer in ((client_r, server_w), (server_r, client_w)):
            task = asyncio.create_task(self._pump(reader, writer))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self.open.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self.tasks):
            task.cancel()


class ClusterProxies:
    """One stallable proxy per node, from its advertised proxy port to its PROXIED listener; a client
    bootstrapped with `ClusterState.proxied_bootstrap` reaches the cluster only through them."""

    def __init__(self, state: ClusterState) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.proxies = [TcpProxy(n.proxy_port, n.proxied_port, self.loop) for n in state.nodes]
        for proxy in self.proxies:
            self._call(proxy.start())

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    def pause(self) -> None:
        for proxy in self.proxies:
            self.loop.call_soon_threadsafe(proxy.open.clear)

    def resume(self) -> None:
        for proxy in self.proxies:
            self.loop.call_soon_threadsafe(proxy.open.set)

    def close(self) -> None:
        for proxy in self.proxies:
            self._call(proxy.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


# --- the collector as a process -----------------------------------------------------------------------


class CollectorProcess:
    """`pioneer-telemetry collect` on the watched folder, as a subprocess that can be killed and started
    again (same checkpoint file). Its output goes through a pipe, so a file-size limit on the process
    hits its checkpoint, not its log."""

    def __init__(self, log_dir: Path, base: Path, bootstrap: str, topics: TopicSettings) -> None:
        self.log_dir, self.checkpoint, self.log_path = (
            log_dir,
            base / "positions.json",
            base / "collector.log",
        )
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PIONEER_")} | {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "PIONEER_TOPICS_RAW": topics.raw,
            "PIONEER_COLLECTOR_POLL_INTERVAL_S": "0.05",
            "PIONEER_COLLECTOR_ROTATE_WAIT_S": "0.5",
            "PIONEER_COLLECTOR_STATUS_INTERVAL_S": "5",
        }
        self.process: subprocess.Popen[bytes] | None = None
        self._copier: threading.Thread | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> CollectorProcess:
        command = [sys.executable, "-m", "pioneer_telemetry", "collect", "--path", str(self.log_dir / "*.log"),
                   "--start-at", "beginning", "--checkpoint-file", str(self.checkpoint)]  # fmt: skip
        self.process = subprocess.Popen(
            command, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._copier = threading.Thread(target=self._copy, args=(self.process,), daemon=True)
        self._copier.start()
        return self

    def _copy(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        with self.log_path.open("ab") as log:
            for line in process.stdout:
                log.write(line)
                log.flush()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self, signal_number: int = signal.SIGKILL, timeout_s: float = 60) -> None:
        if not self.alive():
            return
        assert self.process is not None
        self.process.send_signal(signal_number)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        if self._copier is not None:
            self._copier.join(timeout=10)

    def limit_file_size(self, max_bytes: int | None) -> None:
        """A full disk, as the collector sees it: no file it writes may grow past `max_bytes` (None: no
        limit again). Writes beyond fail with EFBIG (Python ignores SIGXFSZ)."""
        _, hard = resource.prlimit(self.pid, resource.RLIMIT_FSIZE)
        soft = resource.RLIM_INFINITY if max_bytes is None else max_bytes
        resource.prlimit(self.pid, resource.RLIMIT_FSIZE, (soft, hard))

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


# --- one run ------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    scenario: str
    events: int = 0  # events the simulated users produced (the truth)
    lost: int = 0  # summed over minute windows: truth - API, where the API has fewer
    double_counted: int = 0  # summed over minute windows: API - truth, where the API has more
    events_topic_records: int = 0
    events_topic_duplicates: int = 0  # records on the events topic whose event_id came before
    events_topic_missing: int = 0  # truth events with no record on the events topic
    raw_lines_dropped_as_replays: int = 0  # lines the collector sent twice; the worker counted them once
    time_to_exact_s: float | None = None  # from recovery (or the fault) to both APIs exact
    after_last_line_s: float | None = None  # from the last line written to both APIs exact
    fault: str = ""
    notes: list[str] = field(default_factory=list)
    windows_off: dict[str, tuple[int, int]] = field(default_factory=dict)  # minute -> (truth, API)
    exact: bool = False
    wall_s: float = 0.0


def window_differences(
    worker: WorkerProcess, truth: dict[str, Any]
) -> tuple[int, int, dict[str, tuple[int, int]]]:
    """(lost, double-counted, windows that differ) of a worker's minute windows against the truth."""
    points = {p["start_ms"]: p["events"] for p in worker.get("timeseries", **truth_range(truth))["points"]}
    lost = double = 0
    off: dict[str, tuple[int, int]] = {}
    expected_ms = {iso_ms(minute): (minute, w["total"]) for minute, w in truth["windows"].items()}
    for start_ms in expected_ms.keys() | points.keys():
        minute, want = expected_ms.get(start_ms, (str(start_ms), 0))
        got = points.get(start_ms, 0)
        lost += max(0, want - got)
        double += max(0, got - want)
        if got != want:
            off[minute] = (want, got)
    return lost, double, off


def exact(worker: WorkerProcess, truth: dict[str, Any]) -> bool:
    overview = worker.get("overview", **truth_range(truth))["current"]
    return overview["events"] == truth["total"] and not window_differences(worker, truth)[2]


@dataclass
class Scenario:
    """`inject(run)` does the fault and returns once it is over (the recovery)."""

    name: str
    description: str
    inject: Callable[[FaultRun], None]
    proxied: bool = False  # the collector reaches the cluster through stallable proxies
    quick: bool = False  # part of the default `make test`


class FaultRun:
    """The pipeline of one scenario, on its own topics and consumer group, in `base`."""

    def __init__(self, cluster: LocalCluster, base: Path, scenario: Scenario, *, users: int = 6,
                 minutes: int = 10, seed: int = 3, slices: int = 200, pause_s: float = 0.2) -> None:  # fmt: skip
        self.cluster, self.base, self.scenario = cluster, base, scenario
        self.truth = simulate(base / "staged", users=users, minutes=minutes, seed=seed)
        self.topics = unique_topics(f"f{uuid.uuid4().hex[:8]}")
        state = cluster.state()
        assert state is not None
        self.state = state
        self.kafka = KafkaSettings(bootstrap_servers=state.bootstrap)
        asyncio.run(ensure_topics(self.kafka, topic_specs(self.topics)))
        env = worker_env(state.bootstrap, self.topics, f"pt-fault-{uuid.uuid4().hex[:8]}")
        self.workers = [WorkerProcess(env, base / f"w{i}", base / f"w{i}.log") for i in (1, 2)]
        self.logs = PacedLogs(base / "staged", base / "logs", slices=slices, pause_s=pause_s)
        self.proxies = ClusterProxies(state) if scenario.proxied else None
        bootstrap = state.proxied_bootstrap if scenario.proxied else state.bootstrap
        self.collector = CollectorProcess(base / "logs", base, bootstrap, self.topics)
        self.outcome = Outcome(scenario.name, events=self.truth["total"])
        self.fault_at: float | None = None
        self.recovered_at: float | None = None

    def note(self, text: str) -> None:
        self.outcome.notes.append(text)

    def counted(self, worker: WorkerProcess) -> int:
        return worker.get("overview", **truth_range(self.truth))["current"]["events"]

    def run(self, exact_timeout_s: float = 240, check: Callable[[FaultRun], None] | None = None) -> Outcome:
        """The scenario; `check(self)` runs at the end while the workers still answer."""
        started = time.monotonic()
        try:
            for worker in self.workers:
                worker.start()
            for worker in self.workers:
                worker.wait_until(
                    lambda w: len(w.get("health")["workers"]) == 2, what="two workers in the group"
                )
            self.collector.start()
            self.logs.start()
            self.workers[1].wait_until(lambda w: self.counted(w) > self.truth["total"] * 0.3,
                                       what="a third of the events counted")  # fmt: skip
            self.fault_at = time.monotonic()
            self.scenario.inject(self)
            self.recovered_at = self.recovered_at or time.monotonic()
            self._measure(exact_timeout_s)
            if check is not None:
                check(self)
        finally:
            self.collector.kill(signal.SIGTERM)
            for worker in self.workers:
                if worker.process is not None and worker.process.poll() is None:
                    worker.kill(signal.SIGTERM)
            if self.proxies is not None:
                self.proxies.close()
            self.outcome.wall_s = round(time.monotonic() - started, 1)
        return self.outcome

    def _measure(self, timeout_s: float) -> None:
        assert self.logs.done.wait(timeout=300), "the paced logs were not all written"
        last_line_at = time.monotonic()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if all(exact(w, self.truth) for w in self.workers):
                    now = time.monotonic()
                    assert self.recovered_at is not None
                    self.outcome.time_to_exact_s = round(now - self.recovered_at, 1)
                    self.outcome.after_last_line_s = round(now - last_line_at, 1)
                    self.outcome.exact = True
                    break
            time.sleep(0.5)
        if not self.outcome.exact:  # settle: take the differences once the counts stop changing
            previous = None
            for _ in range(20):
                current = [self.counted(w) for w in self.workers]
                if current == previous:
                    break
                previous = current
                time.sleep(3)
        lost = double = 0
        for worker in self.workers:
            w_lost, w_double, off = window_differences(worker, self.truth)
            lost, double = max(lost, w_lost), max(double, w_double)
            self.outcome.windows_off |= off
        self.outcome.lost, self.outcome.double_counted = lost, double
        overview = self.workers[0].get("overview", **truth_range(self.truth))["current"]
        self.outcome.raw_lines_dropped_as_replays = overview["duplicates"]
        events = consume(
            self.kafka, self.topics.events, expected=self.truth["total"], timeout_s=60, settle_s=2
        )
        ids = Counter(e["event_id"] for e in events)
        self.outcome.events_topic_records = len(events)
        self.outcome.events_topic_duplicates = len(events) - len(ids)
        self.outcome.events_topic_missing = max(0, self.truth["total"] - len(ids))

    def assert_exact(self) -> None:
        """The pytest verdict: every aggregate of both workers equals the truth (tests/truth.py)."""
        assert self.outcome.exact, self.describe()
        assert self.outcome.lost == self.outcome.double_counted == 0, self.describe()

    def describe(self) -> str:
        o = self.outcome
        return (f"{o.scenario}: lost {o.lost}, double-counted {o.double_counted}, windows off (truth, API) "
                f"{o.windows_off}, notes {o.notes}\n--- collector\n{self.collector.log_tail()}\n"
                + "\n".join(f"--- worker {i + 1}\n{w.log_tail(20)}" for i, w in enumerate(self.workers)))  # fmt: skip


class _ReplaysAllowed:
    """A worker's API where `overview`'s `duplicates` (raw lines the collector delivered twice, which the
    worker dropped) reads 0: a collector killed or cut off mid-batch sends its unacknowledged lines
    again by design. The real number is kept, and reported as `raw_lines_dropped_as_replays`."""

    def __init__(self, worker: WorkerProcess) -> None:
        self.worker = worker
        self.duplicates = 0

    def get(self, endpoint: str, /, **params: Any) -> Any:
        answer = self.worker.get(endpoint, **params)
        if endpoint == "overview":
            self.duplicates = answer["current"]["duplicates"]
            answer["current"]["duplicates"] = 0
        return answer


def full_check(run: FaultRun) -> None:
    """tests/truth.py's full comparison (users, notebooks, executions...) on both workers, while they run."""
    for worker in run.workers:
        assert_equals_truth(_ReplaysAllowed(worker), run.truth)


# --- the faults ---------------------------------------------------------------------------------------

BROKER_DOWN_S = 20.0
NETWORK_STALL_S = 30.0
CONTROLLER_DOWN_S = 20.0
DISK_FULL_S = 20.0


def kill_partition_leader(run: FaultRun) -> None:
    leader = run.cluster.partition_leader(run.topics.raw, 0)
    run.outcome.fault = (
        f"SIGKILL of node {leader} (leader of {run.topics.raw}[0]), restarted after {BROKER_DOWN_S:.0f} s"
    )
    run.cluster.kill_node(leader)
    time.sleep(BROKER_DOWN_S)
    new_leader = run.cluster.partition_leader(run.topics.raw, 0)
    run.note(f"while node {leader} was down, partition 0's leader was node {new_leader}")
    run.cluster.start_node(leader, heap=NODE_HEAP)
    run.recovered_at = time.monotonic()


def kill_one_worker(run: FaultRun) -> None:
    leaving, staying = run.workers
    run.outcome.fault = "SIGKILL of one of the two workers; the other takes its partitions; it comes back"
    leaving.kill(signal.SIGKILL)
    taken_at = time.monotonic()
    staying.wait_until(lambda w: len(w.get("health")["workers"]) == 1, what="the other worker's partitions")
    run.note(f"the other worker owned every partition {time.monotonic() - taken_at:.1f} s after the kill")
    time.sleep(3)
    leaving.start()  # same data dir
    run.recovered_at = time.monotonic()


def kill_collector(run: FaultRun) -> None:
    run.outcome.fault = "SIGKILL of the collector, restarted 5 s later from its checkpoint"
    run.collector.kill(signal.SIGKILL)
    time.sleep(5)
    run.collector.start()
    run.recovered_at = time.monotonic()


def stall_network(run: FaultRun) -> None:
    assert run.proxies is not None
    run.outcome.fault = f"the collector's connections to every broker stall for {NETWORK_STALL_S:.0f} s (proxies stop forwarding)"
    run.proxies.pause()
    time.sleep(2)  # what was in flight settles
    before = raw_records(run)
    time.sleep(NETWORK_STALL_S - 2)
    run.note(
        f"raw records that reached the cluster during the stall (after 2 s): {raw_records(run) - before}"
    )
    run.proxies.resume()
    run.recovered_at = time.monotonic()
    run.note(f"collector alive after the stall: {run.collector.alive()}")


def kill_active_controller(run: FaultRun) -> None:
    controller = run.cluster.active_controller()
    run.outcome.fault = (
        f"SIGKILL of node {controller}, the active KRaft controller (and a broker), restarted after "
        f"{CONTROLLER_DOWN_S:.0f} s"
    )
    killed_at = time.monotonic()
    run.cluster.kill_node(controller)
    new = None
    while time.monotonic() - killed_at < CONTROLLER_DOWN_S:
        with contextlib.suppress(Exception):
            new = run.cluster.active_controller()
            if new != controller:
                run.note(
                    f"node {new} became the active controller {time.monotonic() - killed_at:.1f} s after the kill"
                )
                break
        time.sleep(0.2)
    time.sleep(max(0.0, CONTROLLER_DOWN_S - (time.monotonic() - killed_at)))
    run.cluster.start_node(controller, heap=NODE_HEAP)
    run.recovered_at = time.monotonic()


def fill_checkpoint_disk(run: FaultRun) -> None:
    run.outcome.fault = (
        f"the collector's disk is full for {DISK_FULL_S:.0f} s (RLIMIT_FSIZE: its checkpoint cannot be written), "
        "then has space again"
    )
    run.collector.limit_file_size(16)
    time.sleep(2)  # what was in flight settles
    before = raw_records(run)
    time.sleep(DISK_FULL_S - 2)
    during = raw_records(run) - before
    run.note(f"collector alive while its disk was full: {run.collector.alive()}")
    run.note(f"raw records the collector produced while its disk was full (after 2 s): {during}")
    if run.collector.alive():
        run.collector.limit_file_size(None)
        run.note("space back: the limit lifted, the same collector process goes on")
    else:
        run.collector.start()
        run.note("space back: the collector had exited; restarted without the limit")
    run.recovered_at = time.monotonic()


def raw_records(run: FaultRun) -> int:
    """Records on the raw topic now (the sum of its partitions' end offsets)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: PLC0415

    async def count() -> int:
        consumer = AIOKafkaConsumer(**run.kafka.client_options())
        await consumer.start()
        try:
            partitions = [TopicPartition(run.topics.raw, p) for p in range(run.topics.partitions)]
            return sum((await consumer.end_offsets(partitions)).values())
        finally:
            await consumer.stop()

    return asyncio.run(count())


SCENARIOS = [
    Scenario(
        "broker-leader-kill",
        "the broker leading raw partition 0 is killed",
        kill_partition_leader,
        quick=True,
    ),
    Scenario("worker-kill", "one of two workers is killed and comes back", kill_one_worker, quick=True),
    Scenario("collector-kill", "the collector is killed and restarted", kill_collector),
    Scenario("network-stall", "the collector-to-cluster network stalls", stall_network, proxied=True),
    Scenario("controller-kill", "the active controller is killed", kill_active_controller),
    Scenario("checkpoint-disk-full", "the collector's checkpoint disk is full", fill_checkpoint_disk),
]
