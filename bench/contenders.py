"""How `run_all.py` drives each contender: one subprocess per run (so CPU seconds and peak RSS are its
own), timed from its first record to "caught up", its aggregates compared with the simulator's ground
truth.

Peers (`bench/peers/`) speak the line protocol of `peers.peerlib`; our worker is started as in
`bench_worker.py` and read through its API. Figures taken the same way for all: CPU seconds from
/proc/<pid>/stat between consuming and caught up, peak RSS as VmHWM when caught up.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson
from bench_worker import HOUR_MS, MINUTE_MS, Worker, WorkerFailed, caught_up, truth_span
from benchlib import process_cpu_seconds

from simulator.truth import iso_utc
from streams.identity import PodMeta
from streams.topics import TopicSettings

BENCH_DIR = Path(__file__).resolve().parent
KEPT_LOGS = BENCH_DIR / "results" / "logs"  # a failed peer run's log, kept past the temp dir


class ContenderFailed(RuntimeError):
    pass


@dataclass
class Workload:
    """The one pre-filled raw topic every contender reads, and what it must find there."""

    bootstrap: str
    topics: TopicSettings
    ends: list[int]  # end offset of each raw partition
    truth: dict[str, Any]
    expected: dict[str, Any]  # the ground truth in the contenders' result format
    work: Path
    worker_env: dict[str, str]

    @property
    def total(self) -> int:
        return int(self.truth["total"])

    def timeout_s(self) -> float:
        """How long a run may take before it counts as stuck: generous, the machine is shared."""
        return 120 + self.total / 200


@dataclass
class Run:
    """One throughput run: no figures unless the answer was right."""

    problems: list[str]
    startup_s: float | None = None  # spawn -> ready
    join_s: float | None = None  # ready -> consuming (group join, assignment, state recovery)
    wall_s: float | None = None  # consuming -> caught up
    cpu_s: float | None = None  # consuming -> caught up
    peak_rss_mb: float | None = None


@dataclass
class Recovery:
    problems: list[str]
    killed_at: int | None = None  # events it had reported when it was killed
    seconds: float | None = None  # restart (spawn) -> caught up again with the right answer
    resumed_s: float | None = None  # restart (spawn) -> consuming again (as for "ready -> first record")


class Live(Protocol):
    """A contender consuming a live topic; `markers` maps a marker's notebook path to when it showed;
    `sent` is the feed's (every marker handed over so far, filled by the feed)."""

    markers: dict[str, float]
    sent: dict[str, float]

    def cpu_s(self) -> float: ...


class Contender(Protocol):
    name: str
    label: str
    kafka: bool  # whether latency and recovery apply
    live_latency: bool  # whether it is measured on a live topic too (needs `live`)

    def throughput(self, workload: Workload, tag: str) -> Run: ...

    def live(self, workload: Workload, topics: TopicSettings) -> contextlib.AbstractContextManager[Live]: ...

    def recovery(self, workload: Workload, kill_after_s: float) -> Recovery:
        """Kill -9 `kill_after_s` after it started consuming (a peer's first progress report, our worker's
        partitions assigned), restart with the same group and state, time the catch-up."""
        ...


def expected_result(truth: dict[str, Any]) -> dict[str, Any]:
    """The simulator's ground truth in the contenders' result format (`peers.peerlib.Counts.result`).
    Users are named as the parser names them: from the log file's pod name, as the collector reads it."""
    user_of = {name: PodMeta.from_log_path(pod["log_file"]).user for name, pod in truth["pods"].items()}
    return {
        "events": truth["total"],
        "events_by_minute": {start: w["by_event"] for start, w in truth["windows"].items()},
        "users_by_minute": {start: w["users"] for start, w in truth["windows"].items()},
        "failures_by_error": truth["failures_by_error"],
        "executions_by_notebook": {
            user_of[user]: paths for user, paths in truth["executions_by_notebook"].items()
        },
    }


def differences(result: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """One line per aggregate that differs from the truth, with an example."""
    problems = []
    for name, want in expected.items():
        got = result.get(name)
        if got == want:
            continue
        if isinstance(want, dict) and isinstance(got, dict):
            wrong = [key for key in sorted(set(want) | set(got)) if want.get(key) != got.get(key)]
            problems.append(
                f"{name}: {len(wrong)} of {len(want)} entries differ, e.g. {wrong[0]}: "
                f"{str(got.get(wrong[0]))[:200]} != truth {str(want.get(wrong[0]))[:200]}"
            )
        else:
            problems.append(f"{name}: {str(got)[:200]} != truth {str(want)[:200]}")
    return problems


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the process's own peak RSS (ru_maxrss of a child would be the parent's at fork time)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise KeyError("VmHWM")


# -- peers ------------------------------------------------------------------------------------------


@dataclass
class Message:
    arrived: float  # perf_counter
    body: dict[str, Any]
    cpu_s: float = 0.0  # of the peer, when the line arrived
    peak_rss_mb: float = 0.0


@dataclass
class PeerProcess:
    """A peer script in its own process; a thread timestamps its protocol lines as they arrive."""

    module: str
    args: list[str]
    log_path: Path
    markers: dict[str, float] = field(default_factory=dict)
    sent: dict[str, float] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    spawned: float = 0.0
    _messages: queue.Queue[Message] = field(default_factory=queue.Queue)

    def start(self) -> None:
        env = os.environ | {
            "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH_DIR), os.environ.get("PYTHONPATH")]))
        }
        self._messages = queue.Queue()
        self.spawned = time.perf_counter()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", f"peers.{self.module}", *self.args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
            )
        threading.Thread(target=self._read, args=(self.process,), daemon=True).start()

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            arrived = time.perf_counter()
            try:  # a framework may write to stdout too, even on the same line (Faust's spinner)
                body = orjson.loads(line[line.index(b'{"event"') :])
                event = body["event"]
            except (ValueError, KeyError, TypeError):
                continue
            if event == "marker":
                self.markers.setdefault(body["path"], arrived)
                continue
            message = Message(arrived, body)
            if event in ("ready", "progress", "caught_up"):
                with contextlib.suppress(OSError, KeyError):
                    message.cpu_s = process_cpu_seconds(process.pid)
                    message.peak_rss_mb = peak_rss_mb(process.pid)
            self._messages.put(message)
        self._messages.put(Message(time.perf_counter(), {"event": "exited"}))

    def expect(self, event: str, timeout_s: float) -> Message:
        """The next message `event` (progress reports before it are skipped)."""
        deadline = time.perf_counter() + timeout_s
        while True:
            message = self._next(deadline)
            if message is None:
                raise ContenderFailed(f"{self.module}: no {event!r} within {timeout_s:.0f} s")
            if message.body["event"] == event:
                return message

    def progress_until(self, deadline: float) -> int:
        """The events last reported by `deadline` (all of them if it caught up before)."""
        events = 0
        while (message := self._next(deadline)) is not None:
            if message.body["event"] in ("progress", "caught_up"):
                events = message.body["events"]
        return events

    def _next(self, deadline: float) -> Message | None:
        """The next message before `deadline`, or None; raises if the peer exited."""
        try:
            message = self._messages.get(timeout=max(deadline - time.perf_counter(), 0.001))
        except queue.Empty:
            return None
        if message.body["event"] == "exited":
            assert self.process is not None
            raise ContenderFailed(f"{self.module} exited ({self.process.wait()}): {self.log_tail()}")
        return message

    def cpu_s(self) -> float:
        assert self.process is not None
        return process_cpu_seconds(self.process.pid)

    def diagnosis(self, done: Message) -> str:
        """For a wrong answer: what the peer counted itself when it said caught up (the answer is read
        back from Kafka after that), and where its log is kept."""
        KEPT_LOGS.mkdir(parents=True, exist_ok=True)
        kept = KEPT_LOGS / f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{self.log_path.name}"
        shutil.copy(self.log_path, kept)
        return f"the peer counted {done.body.get('events')} events itself when caught up; its log: {kept}"

    def kill(self) -> None:
        """kill -9: no shutdown, no final commit."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        """Close stdin (a finished peer exits on it); kill what does not exit."""
        if self.process is None:
            return
        with contextlib.suppress(OSError):
            assert self.process.stdin is not None
            self.process.stdin.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 15) -> str:
        return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Peer:
    """A contender in `bench/peers/<module>.py`."""

    name: str
    label: str
    module: str
    kafka: bool = True
    live_latency: bool = True

    def _process(self, workload: Workload, topic: str, group: str, ends: list[int] | None) -> PeerProcess:
        args = ["--bootstrap", workload.bootstrap, "--topic", topic,
                "--partitions", str(workload.topics.partitions), "--group", group,
                "--state-dir", str(workload.work / group)]  # fmt: skip
        if ends is not None:
            args += ["--ends", orjson.dumps(ends).decode()]
        return PeerProcess(self.module, args, workload.work / f"{group}.log")

    def throughput(self, workload: Workload, tag: str) -> Run:
        peer = self._process(workload, workload.topics.raw, f"bench-{self.name}-{tag}", workload.ends)
        peer.start()
        try:
            ready = peer.expect("ready", 120)
            consuming = peer.expect("progress", workload.timeout_s())  # its first record
            done = peer.expect("caught_up", workload.timeout_s())
            result = peer.expect("result", 120).body["result"]
        except ContenderFailed as failure:
            return Run([str(failure)])
        finally:
            peer.stop()
        problems = differences(result, workload.expected)
        if problems:
            return Run([*problems, peer.diagnosis(done)])
        return Run(
            [],
            startup_s=ready.arrived - peer.spawned,
            join_s=consuming.arrived - ready.arrived,
            wall_s=done.arrived - consuming.arrived,
            cpu_s=done.cpu_s - consuming.cpu_s,
            peak_rss_mb=done.peak_rss_mb,
        )

    @contextlib.contextmanager
    def live(self, workload: Workload, topics: TopicSettings) -> Iterator[Live]:
        peer = self._process(workload, topics.raw, f"bench-{self.name}-live-{uuid.uuid4().hex[:6]}", None)
        peer.start()
        try:
            peer.expect("ready", 120)
            yield peer
        finally:
            peer.kill()

    def recovery(self, workload: Workload, kill_after_s: float) -> Recovery:
        group = f"bench-{self.name}-recovery-{uuid.uuid4().hex[:6]}"
        first = self._process(workload, workload.topics.raw, group, workload.ends)
        first.start()
        try:
            first.expect("ready", 120)
            consuming = first.expect("progress", workload.timeout_s())
            killed_at = first.progress_until(consuming.arrived + kill_after_s)
        except ContenderFailed as failure:
            return Recovery([f"before the kill: {failure}"])
        finally:
            first.kill()
        second = self._process(workload, workload.topics.raw, group, workload.ends)
        second.start()
        try:
            second.expect("ready", 120)
            resumed = second.expect("progress", workload.timeout_s())  # sent at its first record
            done = second.expect("caught_up", workload.timeout_s())
            result = second.expect("result", 120).body["result"]
        except ContenderFailed as failure:
            return Recovery([f"after the restart: {failure}"], killed_at)
        finally:
            second.stop()
        problems = differences(result, workload.expected)
        if problems:
            return Recovery(problems, killed_at)
        return Recovery([], killed_at, done.arrived - second.spawned, resumed.arrived - second.spawned)


# -- our worker -------------------------------------------------------------------------------------


def worker_result(worker: Worker, truth: dict[str, Any]) -> dict[str, Any]:
    """The worker's aggregates over the simulated range, read from its API, in the result format."""
    span = truth_span(truth, MINUTE_MS)
    points = [p for p in worker.get("timeseries", **span)["points"] if p["events"]]
    overview = worker.get("overview", **span)["current"]
    notebooks: dict[str, dict[str, dict[str, int]]] = {}
    for row in worker.get("top", dimension="notebooks", limit=10**9, **span)["rows"]:
        if row["executions"]:
            notebooks.setdefault(row["user"], {})[row["notebook"]] = {
                "executions": row["executions"],
                "failures": row["failures"],
            }
    return {
        "events": overview["events"],
        "events_by_minute": {iso_utc(p["start_ms"]): p["events_by_name"] for p in points},
        "users_by_minute": {iso_utc(p["start_ms"]): p["active_users"] for p in points},
        "failures_by_error": overview["failures_by_error"],
        "executions_by_notebook": notebooks,
    }


def counted(worker: Worker, truth: dict[str, Any]) -> int:
    """Events the worker counts over the simulated range (hour windows: cheap to ask for often)."""
    return int(worker.get("overview", **truth_span(truth, HOUR_MS))["current"]["events"])


MARKER_LOOKBACK_MS = 5000  # a marker counted later than this after it was logged may go unseen


@dataclass
class WorkerLive:
    """Our worker on a live topic, and a thread that waits on its API's `/changes` (answered as soon as
    a batch is counted) and then asks for the oldest awaited marker's notebook: two requests of
    resolution. A marker found, it asks for the next one at once (one batch may hold several)."""

    worker: Worker
    markers: dict[str, float] = field(default_factory=dict)
    sent: dict[str, float] = field(default_factory=dict)
    stopped: threading.Event = field(default_factory=threading.Event)

    def awaited(self) -> str | None:
        """The oldest marker not seen yet that was logged within the lookback the query covers."""
        since = time.perf_counter() - MARKER_LOOKBACK_MS / 1000
        return next(
            (path for path, at in list(self.sent.items()) if at > since and path not in self.markers), None
        )

    def poll(self) -> None:
        """Asks only while a marker is awaited: a reader asking after every batch even when it expects
        nothing would take a share of the worker's loop from the counting."""
        token, found = "", False
        while not self.stopped.is_set():
            try:
                if not found:
                    token = self.worker.get("changes", after=token, wait_s=1)["token"]
                path = self.awaited()
                if path is None:
                    found = False
                    continue
                now = int(time.time() * 1000)
                answer = self.worker.get(  # markers are logged now: their minute or the one before
                    "notebooks", path=path, from_ms=now - MARKER_LOOKBACK_MS, to_ms=now + 1000
                )
            except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError):
                self.stopped.wait(0.05)  # not answering yet (starting, or busy): ask again shortly
                found = False
                continue
            found = answer["found"]
            if found:
                self.markers.setdefault(path, time.perf_counter())

    def cpu_s(self) -> float:
        return process_cpu_seconds(self.worker.pid)


@dataclass
class OurWorker:
    """`pioneer-telemetry worker`, as `bench_worker.py` starts it (own app id, port and data dir)."""

    name: str = "ours"
    label: str = "our worker (`pioneer-telemetry worker`)"
    kafka: bool = True
    live_latency: bool = True
    env: dict[str, str] = field(default_factory=dict)  # under the harness's --worker-env

    def _worker(self, workload: Workload, topics: TopicSettings, name: str) -> Worker:
        return Worker(workload.bootstrap, topics, workload.work, name, self.env | workload.worker_env)

    def _until_assigned(self, worker: Worker, workload: Workload) -> None:
        """Until /health lists every raw partition: it is about to consume (while it works through a batch
        the API would not answer, so this is the last moment the harness can see before it processes)."""
        partitions = workload.topics.partitions
        worker.wait(lambda w: len(w.get("health")["partitions"]) == partitions, timeout_s=120)

    def _until_caught_up(self, worker: Worker, workload: Workload) -> float:
        def finished(w: Worker) -> float | None:
            # lag first: it costs the worker next to nothing, while the overview merges every hour window
            # of the range (asked every 50 ms through a catch-up, it took 5 % of the worker's CPU)
            done = caught_up(workload.topics.partitions)(w) and counted(w, workload.truth) >= workload.total
            return time.perf_counter() if done else None

        return float(worker.wait(finished, timeout_s=workload.timeout_s()))

    def throughput(self, workload: Workload, tag: str) -> Run:
        worker = self._worker(workload, workload.topics, f"ours-{tag}-{uuid.uuid4().hex[:6]}")
        spawned = time.perf_counter()
        worker.start()
        try:
            worker.wait(lambda w: w.get("health") is not None, timeout_s=120)
            ready = time.perf_counter()
            self._until_assigned(worker, workload)
            consuming, cpu0 = time.perf_counter(), process_cpu_seconds(worker.pid)
            done = self._until_caught_up(worker, workload)
            cpu, rss = process_cpu_seconds(worker.pid) - cpu0, peak_rss_mb(worker.pid)
            problems = differences(worker_result(worker, workload.truth), workload.expected)
        except WorkerFailed as failure:
            return Run([str(failure).splitlines()[0]])
        finally:
            worker.stop()
        if problems:
            return Run(problems)
        return Run(
            [],
            startup_s=ready - spawned,
            join_s=consuming - ready,
            wall_s=done - consuming,
            cpu_s=cpu,
            peak_rss_mb=rss,
        )

    @contextlib.contextmanager
    def live(self, workload: Workload, topics: TopicSettings) -> Iterator[Live]:
        worker = self._worker(workload, topics, f"ours-live-{uuid.uuid4().hex[:6]}")
        worker.start()
        live = WorkerLive(worker)
        poller = threading.Thread(target=live.poll, daemon=True)
        try:
            worker.wait(lambda w: w.get("health") is not None, timeout_s=120)
            poller.start()
            yield live
        finally:
            live.stopped.set()
            worker.stop()

    def recovery(self, workload: Workload, kill_after_s: float) -> Recovery:
        worker = self._worker(workload, workload.topics, f"ours-recovery-{uuid.uuid4().hex[:6]}")
        worker.start()
        try:
            self._until_assigned(worker, workload)
            time.sleep(kill_after_s)  # asking the API how far it got would wait for its current batch
            worker.alive()
        except WorkerFailed as failure:
            worker.stop()
            return Recovery([f"before the kill: {str(failure).splitlines()[0]}"])
        assert worker.process is not None
        worker.process.kill()
        worker.process.wait()
        restarted = time.perf_counter()
        worker.start()  # the same app id, data dir and port
        try:
            self._until_assigned(worker, workload)
            resumed = time.perf_counter()
            done = self._until_caught_up(worker, workload)
            problems = differences(worker_result(worker, workload.truth), workload.expected)
        except WorkerFailed as failure:
            return Recovery([f"after the restart: {str(failure).splitlines()[0]}"])
        finally:
            worker.stop()
        if problems:
            return Recovery(problems)
        return Recovery([], None, done - restarted, resumed - restarted)


@dataclass
class OurWorkerPair:
    """Two `pioneer-telemetry worker`s of one app sharing the raw topic: the Helm chart's default
    (`worker.replicas: 2`), here both on this machine's two cores. Read through the first one's API,
    which merges both workers' partials. Recovery kills one of them; the other works on. No latency
    run: an event is counted by one worker, as in the single worker's run."""

    name: str = "ours_pair"
    label: str = "our worker ×2 (Helm's default `worker.replicas: 2`; recovery kills one)"
    kafka: bool = True
    live_latency: bool = False
    env: dict[str, str] = field(default_factory=lambda: {"PIONEER_WORKER_PUBLISH_EVENTS": "false"})

    def _pair(self, workload: Workload, tag: str) -> list[Worker]:
        app_id = f"bench-{tag}-{uuid.uuid4().hex[:6]}"
        env = self.env | workload.worker_env | {"PIONEER_WORKER_APP_ID": app_id}
        return [
            Worker(workload.bootstrap, workload.topics, workload.work, f"{app_id}-{i}", env) for i in (0, 1)
        ]

    @staticmethod
    def _local(pair: list[Worker]) -> list[dict[str, Any]]:
        return [worker.get("local/health")["partitions"] for worker in pair]

    def _until_assigned(self, pair: list[Worker], workload: Workload) -> None:
        """Until both hold partitions and together all of them: the group has settled on the two."""

        def settled(_: Worker) -> bool:
            local = self._local(pair)
            return all(local) and sum(len(parts) for parts in local) == workload.topics.partitions

        pair[0].wait(settled, timeout_s=120)

    def _until_caught_up(self, pair: list[Worker], workload: Workload) -> float:
        def finished(_: Worker) -> float | None:
            parts = [part for local in self._local(pair) for part in local.values()]
            read = len(parts) == workload.topics.partitions and all(
                p["lag"] == 0 or p["highwater"] == 0 for p in parts
            )
            done = read and counted(pair[0], workload.truth) >= workload.total
            return time.perf_counter() if done else None

        return float(pair[0].wait(finished, timeout_s=workload.timeout_s()))

    def throughput(self, workload: Workload, tag: str) -> Run:
        pair = self._pair(workload, f"ours-pair-{tag}")
        spawned = time.perf_counter()
        for worker in pair:
            worker.start()
        try:
            for worker in pair:
                worker.wait(lambda w: w.get("health") is not None, timeout_s=120)
            ready = time.perf_counter()
            self._until_assigned(pair, workload)
            consuming, cpu0 = time.perf_counter(), [process_cpu_seconds(w.pid) for w in pair]
            done = self._until_caught_up(pair, workload)
            cpu = sum(process_cpu_seconds(w.pid) - before for w, before in zip(pair, cpu0, strict=True))
            rss = sum(peak_rss_mb(w.pid) for w in pair)
            problems = differences(worker_result(pair[0], workload.truth), workload.expected)
        except WorkerFailed as failure:
            return Run([str(failure).splitlines()[0]])
        finally:
            for worker in pair:
                worker.stop()
        if problems:
            return Run(problems)
        return Run([], ready - spawned, consuming - ready, done - consuming, cpu, rss)

    def live(self, workload: Workload, topics: TopicSettings) -> contextlib.AbstractContextManager[Live]:
        raise NotImplementedError("no latency run (live_latency is False)")

    def recovery(self, workload: Workload, kill_after_s: float) -> Recovery:
        pair = self._pair(workload, "ours-pair-recovery")
        killed = pair[0]
        for worker in pair:
            worker.start()
        try:
            try:
                self._until_assigned(pair, workload)
                time.sleep(kill_after_s)
                for worker in pair:
                    worker.alive()
            except WorkerFailed as failure:
                return Recovery([f"before the kill: {str(failure).splitlines()[0]}"])
            assert killed.process is not None
            killed.process.kill()
            killed.process.wait()
            restarted = time.perf_counter()
            killed.start()  # the same app id, data dir and port: a static member, back before its timeout
            try:
                self._until_assigned(pair, workload)
                resumed = time.perf_counter()
                done = self._until_caught_up(pair, workload)
                problems = differences(worker_result(pair[0], workload.truth), workload.expected)
            except WorkerFailed as failure:
                return Recovery([f"after the restart: {str(failure).splitlines()[0]}"])
        finally:
            for worker in pair:
                worker.stop()
        if problems:
            return Recovery(problems)
        return Recovery([], None, done - restarted, resumed - restarted)


def contenders() -> list[Contender]:
    """In table order: ours first, then the peers, then the limits."""
    return [
        OurWorker(env={"PIONEER_WORKER_PUBLISH_EVENTS": "false"}),  # the peers publish nothing either
        OurWorker(
            "ours_publishing",
            "our worker as deployed (also publishes every event to `pioneer.events`)",
        ),
        OurWorkerPair(),
        Peer("quix", "Quix Streams (tumbling windows)", "quix_peer"),
        Peer("faust", "plain Faust agent (one event at a time)", "faust_peer"),
        Peer("aiokafka", "aiokafka getmany + parse + dicts (ceiling)", "aiokafka_peer"),
        Peer("parse_only", "parse-only limit (orjson, in memory)", "parse_only_peer", kafka=False),
    ]
