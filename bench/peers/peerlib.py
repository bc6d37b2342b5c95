"""What every contender shares, so that only the streaming framework differs between them: the same
parser on the same raw records, the same four aggregates in one result format, and the line protocol
the harness (`bench/run_all.py`) reads on a peer's stdout.

The protocol is one JSON object per line; the harness timestamps each line when it arrives:

    {"event": "ready"}                    up, about to consume: the timed interval starts
    {"event": "progress", "events": n}    at the first record, then every PROGRESS_S
    {"event": "marker", "path": p}        a latency marker's notebook shows in the aggregates
    {"event": "caught_up", "events": n}   every record below the given end offsets is processed
    {"event": "result", "result": {...}}  the aggregates (`Counts.result()`)

After `result` a peer waits for its stdin to close (so the harness can read its CPU time and peak RSS
from /proc first), then exits.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError

from simulator.truth import iso_utc
from streams.aggregate import MINUTE_MS, event_time, window_start
from streams.envelope import EnvelopeReader, envelopes
from streams.parser import LineParser
from streams.schema import PioneerEvent, is_event
from streams.settings import ParserSettings

EXECUTE = "CellExecuteEvent"
MARKER_USER = "bench-marker"
"""The latency runs' marker events come from this user's pods (`jupyter-bench-marker--<server>`)."""
PROGRESS_S = 0.1


def emit(event: str, **fields: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps({"event": event, **fields}) + b"\n")
    sys.stdout.flush()


def finish(result: dict[str, Any]) -> None:
    """Report the result, then wait until the harness has measured this process and closes stdin."""
    emit("result", result=result)
    sys.stdin.read()
    os._exit(0)  # a framework's orderly shutdown is not part of the benchmark


@dataclass(frozen=True)
class PeerArgs:
    bootstrap: str
    topic: str
    partitions: int
    ends: list[int] | None  # end offset of every partition; None: live, never caught up
    group: str  # consumer group / application id: the same after a restart
    state_dir: Path


def parse_args(description: str) -> PeerArgs:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True, help="the raw topic")
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--ends", help="JSON list of end offsets by partition; omitted: live mode")
    parser.add_argument("--group", required=True, help="consumer group or application id")
    parser.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args()
    args.state_dir.mkdir(parents=True, exist_ok=True)
    return PeerArgs(
        bootstrap=args.bootstrap,
        topic=args.topic,
        partitions=args.partitions,
        ends=orjson.loads(args.ends) if args.ends else None,
        group=args.group,
        state_dir=args.state_dir,
    )


async def committed_offsets(args: PeerArgs) -> list[int]:
    """Where the consumer group resumes on each partition (0 where it never committed)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=args.bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + 30
        while True:  # a fresh broker has no coordinator until its offsets topic exists
            try:
                offsets = await admin.list_consumer_group_offsets(args.group)
                break
            except GroupCoordinatorNotAvailableError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
    finally:
        await admin.close()
    partitions = [TopicPartition(args.topic, p) for p in range(args.partitions)]
    return [offsets[tp].offset if tp in offsets else 0 for tp in partitions]


class Tracker:
    """Which records are processed: reports progress, markers and, once, being caught up. `resume`: where
    a restarted consumer group starts reading; partitions it had finished are caught up already."""

    def __init__(self, ends: list[int] | None, resume: list[int] | None = None) -> None:
        self.ends = ends
        self.remaining = None
        if ends is not None:
            self.remaining = {p for p, end in enumerate(ends) if end > (resume[p] if resume else 0)}
        self.events = 0
        self.caught_up = False
        self.markers: set[str] = set()
        self._next_progress = 0.0  # the first record is reported at once: consuming has begun

    def start(self) -> None:
        """Say ready; with nothing left to read (a restart after the end was committed), caught up too."""
        emit("ready")
        if self.remaining is not None and not self.remaining:
            self.caught_up = True
            emit("caught_up", events=0)

    def record(self, partition: int, offset: int, events: int, *, whole: bool = True) -> bool:
        """Count processed events of the record at `offset` (`whole`: its last ones); True the first time
        every partition has reached its end offset."""
        self.events += events
        now = time.monotonic()
        if now >= self._next_progress:
            emit("progress", events=self.events)
            self._next_progress = now + PROGRESS_S
        if self.remaining is None or self.caught_up:
            return False
        assert self.ends is not None
        if whole and offset + 1 >= self.ends[partition]:
            self.remaining.discard(partition)
        if not self.remaining:
            self.caught_up = True
            emit("caught_up", events=self.events)
        return self.caught_up

    def notebook(self, user: str | None, path: str) -> None:
        """Called with a notebook whose executions were just counted: reports new latency markers."""
        if user == MARKER_USER and path not in self.markers:
            self.markers.add(path)
            emit("marker", path=path)


class RecordParser:
    """A raw record's events, its envelopes read as the worker reads them (`streams.envelope`)."""

    def __init__(self, topic: str) -> None:
        self.parser = LineParser(ParserSettings())
        self.reader = EnvelopeReader(topic)

    def parse(self, value: bytes, partition: int, offset: int) -> list[PioneerEvent]:
        events = []
        for envelope in envelopes(value):
            result = self.parser.parse(*self.reader.read(envelope, partition, offset))
            if is_event(result):
                events.append(result)
        return events


class Counts:
    """The four aggregates in plain dicts: events per name per minute, distinct users per minute, failed
    executions by error name, executions and failures per notebook (a notebook is a user and a path)."""

    def __init__(self) -> None:
        self.total = 0
        self.events: defaultdict[int, Counter[str]] = defaultdict(Counter)  # minute start -> name -> n
        self.users: defaultdict[int, set[str]] = defaultdict(set)
        self.failures: Counter[str] = Counter()
        self.notebooks: defaultdict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])

    def add(self, event: PioneerEvent) -> None:
        self.count(
            window_start(event_time(event), MINUTE_MS),
            event["event_name"],
            event["user"] or "",
            event["notebook_path"] or "",
            failed=event["success"] is False,
            error=event["error_name"],
        )

    def count(self, minute: int, name: str, user: str, path: str, *, failed: bool, error: str | None) -> None:
        self.total += 1
        self.events[minute][name] += 1
        self.users[minute].add(user)
        if name == EXECUTE:
            stats = self.notebooks[user, path]
            stats[0] += 1
            if failed:
                stats[1] += 1
                self.failures[error or "unknown"] += 1

    def result(self) -> dict[str, Any]:
        """The format the harness compares with the simulator's ground truth."""
        notebooks: dict[str, dict[str, dict[str, int]]] = {}
        for (user, path), (executions, failures) in sorted(self.notebooks.items()):
            if executions:
                notebooks.setdefault(user, {})[path] = {"executions": executions, "failures": failures}
        return {
            "events": self.total,
            "events_by_minute": {
                iso_utc(minute): dict(sorted(names.items())) for minute, names in sorted(self.events.items())
            },
            "users_by_minute": {iso_utc(minute): len(users) for minute, users in sorted(self.users.items())},
            "failures_by_error": dict(sorted(self.failures.items())),
            "executions_by_notebook": notebooks,
        }
