"""The Faust worker: raw lines -> parser -> events / dead letters, and windowed aggregate tables.

Throughput: the agent takes batches (`take_events`), decodes envelopes with orjson and runs the same
`LineParser` as `pioneer-telemetry parse`. Each batch folds its events into the windows they touch, kept
decoded in memory (`TableCache`) and written to the tables (and changelogs) once per commit, so writes
grow with windows and commits, not with events or batches. A batch is what has arrived when the stream
is quiet, and full batches only under load (`adaptive_take`): an event is counted milliseconds after it
arrives.

Tables are partitioned like the raw topic (by pod): a window key is `<partition>|<window start>`, each
source partition keeps its own partial, and the read API merges partials from every worker. Faust
routes table writes by the current event's partition, while a batch spans partitions: each partition's
writes therefore run in the context of one of its own events (`acting_for`).

Windows: minutes (kept 24 h), hours (35 days) and days (400 days) of stream time. An event is counted into
every window that still holds its time: an event behind its source's watermark by more than the grace
period, or older than the minute retention (a backfill of last term's logs), goes into its hour and day
windows only; one older than the day retention into none (`expired`).

Processing guarantee: at-least-once delivery (the cache is written and Faust flushes the changelog before
committing offsets),
made exact by idempotent updates: a window remembers the highest raw offset it absorbed and skips
replayed events at or below it; a source remembers the highest collector offset it delivered, so lines
the collector sent twice are counted once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import socket
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal, cast

import faust
import orjson
from faust.types import TP, EventT
from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from pioneer_base.config import ComponentSettings, state_dir
from streams.aggregate import (
    HOUR_MS,
    MINUTE_MS,
    UNKNOWN_NAMESPACE,
    DayCalendar,
    Window,
    add_event,
    empty_window,
    entity_share,
    event_time,
    merge_into,
)
from streams.envelope import EnvelopeReader, envelopes
from streams.faust_transport import ContiguousConsumer
from streams.framing import rfc3339_to_ms
from streams.metrics import WorkerMetrics
from streams.outbox import Outbox
from streams.parser import LineParser
from streams.schema import DeadLetter, PioneerEvent
from streams.table_cache import TableCache, acting_for
from streams.topics import TopicSettings, TopicSpec

log = logging.getLogger(__name__)

MINUTES = "minutes"
HOURS = "hours"
DAYS = "days"
SOURCES = "sources"
WINDOW_TABLES = (MINUTES, HOURS, DAYS)


class WorkerSettings(ComponentSettings):
    """`PIONEER_WORKER_*` or the `worker:` YAML section."""

    section: ClassVar[str] = "worker"
    model_config = SettingsConfigDict(env_prefix="PIONEER_WORKER_")

    app_id: str = "pioneer-telemetry"
    web_host: str = "127.0.0.1"  # without api_token, always 127.0.0.1
    web_port: int = 6066
    canonical_url: str | None = None  # how other workers reach this one; default http://web_host:web_port
    data_dir: Path = state_dir() / "worker"
    store: Literal["rocksdb", "memory"] = "rocksdb"
    grace_s: float = 60.0  # how far out of order (per source) an event may come before it counts as late
    minute_retention_h: float = 24.0
    hour_retention_days: float = 35.0
    day_retention_days: float = 400.0
    day_time_zone: str = "UTC"  # where a day window starts and ends (an IANA zone, e.g. Europe/Berlin)
    # an agent batch is full at batch_size raw records or batch_max_bytes of them (streams.adaptive_take);
    # 4 MiB is about 4,000 lines (0.1 s of work): the longest the read API and the commits wait for it
    batch_size: int = 10_000
    batch_max_bytes: int = 4 * 1024 * 1024
    # how long the next batch may wait for the backlog (streams.adaptive_take): after a full batch, or one
    # that left records in Kafka, it waits to fill; otherwise a batch is what has arrived, taken at once
    batch_busy_within_s: float = 0.2
    # a restart after kill -9 replays what was counted since the last commit: up to this and a commit's
    # 0.1-0.2 s. Halving it from 1 s cost no measurable CPU (docs/streams.md, "Restarts")
    commit_interval_s: float = 0.5
    session_timeout_s: float = 10.0  # how soon the group notices a crashed worker and hands its partitions on
    # Kafka static membership: a worker restarted within session_timeout_s (kill -9, a pod replaced) gets
    # its partitions back at once, without a rebalance; one that stops for good keeps them from the
    # others until the session times out (docs/streams.md, "Restarts and static membership")
    static_membership: bool = True
    publish_events: bool = True  # write parsed events to the events topic for downstream consumers
    api_token: SecretStr | None = None  # bearer token of the read API (workers and the dashboard share it)

    @property
    def group_instance_id(self) -> str | None:
        """Stable across restarts of the same worker: its host (a StatefulSet pod's name) and data dir
        (whose state it resumes); two workers never share a data dir."""
        if not self.static_membership:
            return None
        where = hashlib.sha256(str(self.data_dir.resolve()).encode()).hexdigest()[:12]
        return f"{self.app_id}-{socket.gethostname()}-{where}"

    @property
    def bind_host(self) -> str:
        """Where the read API listens: nowhere but loopback while it has no token to ask for."""
        return self.web_host if self.api_token is not None else "127.0.0.1"


@dataclass
class PartitionState:
    """What a worker keeps in memory per raw partition (resumed from the stored state after a restart)."""

    stream_time: int = 0  # highest event time seen
    last_offset: int = -1
    last_event_at: float = 0.0  # wall clock of the last event processed
    dirty: set[bytes] = field(default_factory=set)  # minute keys changed since they were published
    last_expiry: float = 0.0  # monotonic time of this partition's last retention pass


def _window_ceil(time_ms: int, size_ms: int) -> int:
    return -(-time_ms // size_ms) * size_ms


RUN_MAX_BYTES = 1024 * 1024  # of record values: the agent lets the event loop run between runs


def offset_runs(events: list[EventT], max_bytes: int = RUN_MAX_BYTES) -> list[list[EventT]]:
    """One partition's events split where the offsets go back, and every `max_bytes`. After a rebalance
    Faust seeks to the committed offset while records fetched before it may still be on their way, so a
    batch can hold a record twice; each run is written before the next is read, so the windows' offsets
    skip the repeat (within one run, a window is checked against its value from before the run).

    The byte bound: in a catch-up a batch's 4 MiB often come from one partition, 70-80 ms of work, and
    a commit waits for the agent to let the loop run about three times (its changelog's
    acknowledgement, then the offsets' commit): it landed 0.1-0.2 s after it began."""
    runs: list[list[EventT]] = []
    last = None
    size = 0
    for event in events:
        offset = event.message.offset
        if last is None or offset <= last or size >= max_bytes:
            runs.append([])
            size = 0
        runs[-1].append(event)
        size += len(event.value)
        last = offset
    return runs


REREAD_AFTER_S = 5.0  # a record fetched again that still has not come is asked for again
REREAD_CHECK_S = 1.0  # how often that is checked


def until_missing(events: list[EventT], expected: int | None) -> tuple[list[EventT], int | None, bool]:
    """One partition's events up to the first that comes after a record that never came; the offset to
    count next; whether a record is missing (then that offset is the missing record's).

    Windows skip the offsets they hold, so a record must be counted before any later one. Faust can drop
    a fetched record before the agent sees it (its queues are cleared when the flow resumes after a
    rebalance): the later ones must wait until it is fetched again. Earlier offsets (a replay after a
    seek) pass: the windows skip what they hold. `expected` None: whatever comes first starts the run."""
    for index, event in enumerate(events):
        offset = event.message.offset
        if expected is not None and offset > expected:
            return events[:index], expected, True
        expected = offset + 1 if expected is None else max(expected, offset + 1)
    return events, expected, False


def window_key(partition: int, start: int) -> bytes:
    return f"{partition}|{start}".encode()


def parse_window_key(key: bytes) -> tuple[int, int]:
    partition, _, start = key.decode().partition("|")
    return int(partition), int(start)


class Changes:
    """Which state of this worker's windows a reader has seen: a long-polling reader (the dashboard, a
    benchmark) hears of a batch as soon as it is written instead of up to a poll interval later. Tokens
    carry a per-process epoch: a restarted worker's first token differs from every earlier one."""

    def __init__(self) -> None:
        self.epoch = secrets.token_hex(4)
        self.count = 0
        self._next = asyncio.Event()

    @property
    def token(self) -> str:
        return f"{self.epoch}-{self.count}"

    def advance(self) -> None:
        self.count += 1
        self._next.set()
        self._next = asyncio.Event()

    async def after(self, token: str, wait_s: float) -> str:
        """The current token once it differs from `token`, or after `wait_s`, whichever is first."""
        if token == self.token:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._next.wait(), wait_s)
        return self.token


class Pipeline:
    """The agent's work on one batch, kept apart from Faust's wiring so it reads top to bottom."""

    def __init__(
        self, app: faust.App, settings: WorkerSettings, parser: LineParser, topics: TopicSettings
    ) -> None:
        self.app = app
        self.settings = settings
        self.parser = parser
        self.raw_topic_name = topics.raw
        self.minutes = app.Table(MINUTES, key_type=bytes, value_type=bytes, partitions=topics.partitions)
        self.hours = app.Table(HOURS, key_type=bytes, value_type=bytes, partitions=topics.partitions)
        self.days = app.Table(DAYS, key_type=bytes, value_type=bytes, partitions=topics.partitions)
        self.tables = {MINUTES: self.minutes, HOURS: self.hours, DAYS: self.days}
        self.calendar = DayCalendar(settings.day_time_zone)
        self.sources = app.Table(SOURCES, key_type=bytes, value_type=bytes, partitions=topics.partitions)
        self.cache = TableCache({**self.tables, SOURCES: self.sources})
        self.topics = topics
        self.partitions: dict[int, PartitionState] = {}
        self.envelopes = EnvelopeReader(topics.raw)
        self.last_crash: str | None = None  # the agent's last crash, for the health endpoint
        self.outbox = Outbox(app)
        self.changes = Changes()
        self.next_offset: dict[int, int] = {}  # per assigned partition: the record to count next
        # per partition: the offset it is being fetched again from, and since when (monotonic s)
        self.rereading: dict[int, tuple[int, float]] = {}
        self.metrics = WorkerMetrics()
        self.metrics.watch(self)

    def state(self, partition: int) -> PartitionState:
        """The partition's state; a partition new to this process resumes its stream time from the
        sources table, so retention and late events are judged as before a restart."""
        state = self.partitions.get(partition)
        if state is None:
            stream_time = self.stored_stream_time(partition) or 0
            state = PartitionState(stream_time, dirty=self.open_minutes(partition, stream_time))
            self.partitions[partition] = state
        return state

    def open_minutes(self, partition: int, stream_time: int) -> set[bytes]:
        """The partition's stored minute windows not closed at `stream_time`: a worker that resumes the
        partition publishes them when they close, even if no event touches them again. (Those closed
        before were published: `before_commit` sends the outbox before it stores the windows.)"""
        if not stream_time:
            return set()
        horizon, keys = self.publish_horizon(stream_time), set()
        start = stream_time - stream_time % MINUTE_MS
        while start > horizon:
            key = window_key(partition, start)
            if self.cache.get(MINUTES, key) is not None:
                keys.add(key)
            start -= MINUTE_MS
        return keys

    def publish_horizon(self, stream_time: int) -> int:
        """Minute windows starting at or before this are closed (end + grace behind the stream time)."""
        return stream_time - int(self.settings.grace_s * 1000) - MINUTE_MS

    def stored_stream_time(self, partition: int) -> int | None:
        """The highest event time the partition's sources counted (their watermarks), None before any."""
        prefix = f"{partition}|".encode()
        marks = [value["wm"] for _, value in self.cache.items(SOURCES, prefix)]
        return max(marks, default=0) or None

    @property
    def retention_ms(self) -> tuple[int, int, int]:
        """How far behind stream time minute, hour and day windows are kept."""
        settings = self.settings
        return (
            int(settings.minute_retention_h * HOUR_MS),
            int(settings.hour_retention_days * 24 * HOUR_MS),
            int(settings.day_retention_days * 24 * HOUR_MS),
        )

    def floors(self, stream_time: int) -> dict[str, int]:
        """Per window size, the oldest event time a partition at this stream time still counts."""
        minute, hour, day = self.retention_ms
        return {"minute": stream_time - minute, "hour": stream_time - hour, "day": stream_time - day}

    def held_from(self, stream_time: int) -> dict[str, int]:
        """The oldest minute, hour and day window a partition at this stream time still holds."""
        floors = self.floors(stream_time)
        day = self.calendar.start(floors["day"])
        return {
            "minute": _window_ceil(floors["minute"], MINUTE_MS),
            "hour": _window_ceil(floors["hour"], HOUR_MS),
            "day": day if day >= floors["day"] else self.calendar.start(day + 25 * HOUR_MS),
        }

    def local_partitions(self) -> list[int]:
        """The raw topic's partitions this worker owns now."""
        actives = self.app.assignor.assigned_actives()
        return sorted(tp.partition for tp in actives if tp.topic == self.raw_topic_name)

    def lag(self, partition: int) -> int | None:
        """Raw-topic records of the partition not processed yet (None before the first)."""
        consumer, state = self.app.consumer, self.partitions.get(partition)
        if consumer is None or state is None:
            return None
        highwater = consumer.highwater(TP(self.raw_topic_name, partition))
        return None if highwater is None else max(highwater - state.last_offset - 1, 0)

    def backlog(self, events: Sequence[EventT]) -> int:
        """Raw records in Kafka not counted yet, in the partitions of a batch just counted: what the
        agent's next batch waits for (`streams.adaptive_take`)."""
        waiting = 0
        for partition in {event.message.partition for event in events}:
            with contextlib.suppress(AssertionError):  # aiokafka's, for a partition revoked meanwhile
                waiting += self.lag(partition) or 0
        return waiting

    def local_windows(
        self, resolution: str, starts: Sequence[int], user: str | None = None, notebook: str | None = None
    ) -> dict[int, Window]:
        """This worker's partials of the windows starting at `starts`, merged per start; with `user`
        or `notebook`, only their share of them (`aggregate.entity_share`)."""
        entity = user is not None or notebook is not None
        name, get = f"{resolution}s", self.cache.get
        windows: dict[int, Window] = {}
        for partition in self.local_partitions():
            for start in starts:
                stored = get(name, window_key(partition, start))
                if stored is not None:
                    part = entity_share(stored, user, notebook) if entity else stored
                    merge_into(windows.setdefault(start, empty_window()), part)
        return windows

    async def process(self, events: list[EventT]) -> None:
        self.metrics.batch_records.observe(len(events))
        by_partition: dict[int, list[EventT]] = defaultdict(list)
        for event in events:
            by_partition[event.message.partition].append(event)
        assigned = self.local_partitions()
        for partition, group in by_partition.items():
            if partition not in assigned:
                # fetched before a rebalance handed the partition to another worker, which reads it
                # from the committed offset: counting here too would write its windows twice
                self.metrics.revoked.inc(len(group))
                log.info("skipped %d records of partition %d: no longer assigned here", len(group), partition)
                continue
            for n, run in enumerate(offset_runs(await self.in_order(partition, group))):
                if n:
                    await asyncio.sleep(0)
                with acting_for(run[-1]):
                    self._process_partition(partition, run)
            self.changes.advance()
            if self.outbox.holds_much:  # a batch of 100k lines would hold 50 MB of events
                await self.outbox.send()
            else:  # a commit, its acknowledgements and the API wait a partition, not the whole batch
                await asyncio.sleep(0)
        await self.outbox.send_soon()  # in the background: the next batch need not wait for Kafka

    async def in_order(self, partition: int, events: list[EventT]) -> list[EventT]:
        """The events to count now (`until_missing`); when a record is missing, the partition is
        fetched again from it."""
        expected = self.next_offset.get(partition)
        if expected is None:
            expected = self.consumer.committed_offset(TP(self.raw_topic_name, partition))
        events, expected, missing = until_missing(events, expected)
        if expected is None:
            return events
        self.next_offset[partition] = expected
        asked = self.rereading.get(partition)
        if asked is not None and expected > asked[0]:  # it came
            del self.rereading[partition]
            self.consumer.reread_arrived(TP(self.raw_topic_name, partition))
            asked = None
        if missing and asked is None:  # else asked for already: these were fetched before the seek
            await self._reread(partition, expected)
        return events

    async def reread_overdue(self) -> None:
        """Ask again for records fetched again that did not come (Faust can drop the second delivery
        too, when it lands just before the flow resumes after a rebalance)."""
        now, assigned = time.monotonic(), set(self.local_partitions())
        for partition, (offset, since) in list(self.rereading.items()):
            if partition in assigned and now - since >= REREAD_AFTER_S:
                await self._reread(partition, offset)

    async def _reread(self, partition: int, offset: int) -> None:
        self.rereading[partition] = (offset, time.monotonic())
        self.metrics.reread.inc()
        log.warning(
            "partition %d: record %d never reached the agent; fetching again from it", partition, offset
        )
        await self.consumer.reread(TP(self.raw_topic_name, partition), offset)

    @property
    def consumer(self) -> ContiguousConsumer:
        return cast(ContiguousConsumer, self.app.consumer)  # streams.app: use_worker_transport

    def forget_partitions(self, partitions: set[int]) -> None:
        """Partitions revoked: what was pending for them is not committed, and their next owner (this
        worker too, after the rebalance) resumes from the committed offset."""
        self.cache.forget(partitions)
        self.cache.forget_reads()  # a partition that comes back is recovered into the store underneath
        for partition in partitions:
            self.next_offset.pop(partition, None)
            if self.rereading.pop(partition, None) is not None:
                self.consumer.reread_arrived(TP(self.raw_topic_name, partition))

    async def before_commit(self) -> None:
        """Run by the producer's flush, which Faust runs right before committing offsets: what the
        offsets cover goes to Kafka first, the cached windows and the outbox's records."""
        sent = await self.cache.flush(self.outbox.producer)
        await self.outbox.drain()
        if sent:
            await asyncio.gather(*sent)  # acknowledged by the cluster (acks=all), or the commit fails

    def _process_partition(self, partition: int, events: list[EventT]) -> None:  # noqa: PLR0915 (the hot loop, inline)
        state = self.state(partition)
        batch = _PartitionBatch(self, partition, state)
        read, parse, add, publish = self.envelopes.read, self.parser.parse, batch.add, self.outbox.add
        events_topic = self.topics.events if self.settings.publish_events else None
        grace_ms = int(self.settings.grace_s * 1000)
        minute_retention, hour_retention, day_retention = self.retention_ms
        counted = False
        for event in events:
            message = event.message
            raw_offset = message.offset
            state.last_offset = raw_offset
            record_ms = int(message.timestamp * 1000)
            fresh: dict[str, bool] = {}  # per source: is this record new to it (not a replay)?
            source_id_before = None
            for envelope in envelopes(event.value):
                line, source_id, source_offset, pod, runtime_time = read(envelope, partition, raw_offset)
                result = parse(line, source_id, source_offset, pod, runtime_time)
                if result is None:
                    continue
                if isinstance(result, DeadLetter):
                    self._dead_letter(batch, result, raw_offset, runtime_time, record_ms)
                    continue
                when = event_time(result)
                if source_id != source_id_before:  # a record's lines mostly share their source
                    source_id_before, source = source_id, batch.source(source_id)
                    if source_id not in fresh:  # else replayed after a restart: the windows' offsets decide
                        fresh[source_id] = raw_offset > source["raw"]
                    is_fresh = fresh[source_id]
                in_order = True
                if is_fresh:
                    if source_offset <= source["max"]:
                        batch.count("duplicates", raw_offset, when)  # the collector delivered it twice
                        continue
                    source["max"], source["raw"] = source_offset, raw_offset
                    in_order = when >= source["wm"] - grace_ms
                    if in_order:
                        source["wm"] = max(source["wm"], when)
                state.stream_time = max(state.stream_time, when)
                age = state.stream_time - when  # behind the partition's newest event
                if age > day_retention:
                    batch.count("expired", raw_offset, state.stream_time)  # when it came, in stream time
                    continue
                held = age <= minute_retention
                if is_fresh and not held:
                    batch.count("backfilled", raw_offset, state.stream_time)
                elif is_fresh and not in_order:  # in the event's own minute, which a replay finds applied
                    batch.count("late", raw_offset, when)
                counted = True
                add(result, when, raw_offset, in_order and held, age <= hour_retention)
                if events_topic is not None:
                    publish(events_topic, (result["session_id"] or "").encode(), orjson.dumps(result))
        if counted:
            state.last_event_at = time.time()
        batch.write(events[-1])
        self._publish_closed(partition, state)
        self._expire(partition, state, events[-1])

    def _dead_letter(
        self,
        batch: _PartitionBatch,
        letter: DeadLetter,
        raw_offset: int,
        runtime_time: str | None,
        record_ms: int,
    ) -> None:
        runtime_ms = (rfc3339_to_ms(runtime_time) if runtime_time else None) or record_ms
        batch.count("dead_letters", raw_offset, runtime_ms)
        self.outbox.add(self.topics.deadletter, letter.source["id"].encode(), orjson.dumps(letter))

    def retention_floor(self, state: PartitionState) -> int:
        return self.floors(state.stream_time)["minute"]

    def _publish_closed(self, partition: int, state: PartitionState) -> None:
        """Windows whose end + grace is behind the partition's stream time go to the aggregates topic
        (compacted: a window updated again later is simply published again)."""
        horizon = self.publish_horizon(state.stream_time)
        for key in sorted(state.dirty):
            _, start = parse_window_key(key)
            if start > horizon:
                continue
            stored = self.cache.get(MINUTES, key)
            state.dirty.discard(key)
            if stored is not None:
                published = b"minute|%d|%d" % (start, partition)
                self.outbox.add(self.topics.aggregates, published, orjson.dumps(stored))

    def _expire(self, partition: int, state: PartitionState, event: EventT) -> None:
        """Drop minute, hour and day windows past their retention (`minute_retention_h`,
        `hour_retention_days`, `day_retention_days`) of stream time; checked once a minute, per
        partition, in that partition's event context."""
        now = time.monotonic()
        if now - state.last_expiry < 60:
            return
        state.last_expiry = now
        held = self.held_from(state.stream_time)
        for name, oldest in ((MINUTES, held["minute"]), (HOURS, held["hour"]), (DAYS, held["day"])):
            for key in self.cache.keys(name, partition):
                if parse_window_key(key)[1] < oldest:
                    self.cache.delete(name, key, event)


class _PartitionBatch:
    """One partition's share of a batch: every window and source it touches is read once and written
    once, however many events touch it.

    Events are counted into a delta per minute, which is merged into the stored minute window and into
    its hour and day windows when the batch is written: one `add_event` per event instead of one per
    table. Events that miss their minute window (late, backfilled) go into their windows directly."""

    def __init__(self, pipeline: Pipeline, partition: int, state: PartitionState) -> None:
        self.pipeline = pipeline
        self.partition = partition
        self.state = state
        self.windows: dict[tuple[str, int], Window] = {}  # (table name, start) -> stored value, updated
        self._applied: dict[tuple[str, int], int] = {}  # raw offset the stored value held before
        self._deltas: dict[int, Window] = {}  # minute start -> this batch's events for it
        self._delta_minute: int | None = None  # the last event's minute, if it went to a delta
        self._delta: Window = {}
        self._sources: dict[str, dict[str, int]] = {}
        # what the batch added, for the metrics: events by (name, namespace), failures, pipeline counters
        self.added: Counter[tuple[str, str]] = Counter()
        self.failed: Counter[str] = Counter()
        self.counted: Counter[str] = Counter()

    def add(self, event: PioneerEvent, time_ms: int, raw_offset: int, minutes: bool, hours: bool) -> None:
        """Count an event into its minute (if `minutes`), hour (if `hours`) and day, unless they already
        hold it (a replay)."""
        minute = time_ms - time_ms % MINUTE_MS
        if minute == self._delta_minute and minutes and hours:  # its windows did not hold the last event
            add_event(self._delta, event)
            self._delta["o"] = raw_offset
            return
        slots = [(DAYS, self.pipeline.calendar.start(minute))]
        if hours:
            slots.append((HOURS, minute - minute % HOUR_MS))
        if minutes:
            slots.append((MINUTES, minute))
        applied = [self._load(*slot) for slot in slots]
        if minutes and hours and raw_offset > max(applied):
            delta = self._deltas.get(minute)
            if delta is None:
                delta = self._deltas[minute] = empty_window()
            add_event(delta, event)
            delta["o"] = raw_offset  # events come in offset order
            self._delta_minute, self._delta = minute, delta
            return
        if raw_offset > applied[0]:  # new to its day window: an event counted once, however it came
            self._added(event)
        for slot, offset in zip(slots, applied, strict=True):
            if raw_offset > offset:  # late or backfilled, or a crash wrote some windows and not the others
                add_event(self.windows[slot], event)
                self.windows[slot]["o"] = max(self.windows[slot]["o"], raw_offset)

    def _added(self, event: PioneerEvent) -> None:
        """For the metrics: an event counted outside a delta (the deltas are added up when written)."""
        namespace = event["namespace"] or UNKNOWN_NAMESPACE
        self.added[event["event_name"], namespace] += 1
        if event["success"] is False:
            self.failed[namespace] += 1

    def _added_delta(self, delta: Window) -> None:
        """For the metrics: a delta's events, by name and namespace, and its failed executions."""
        for namespace, part in delta["namespaces"].items():
            for name, count in part["events"].items():
                self.added[name, namespace] += count
            failed = sum(part["errors"].values())
            if failed:
                self.failed[namespace] += failed

    def count(self, name: str, raw_offset: int, time_ms: int) -> None:
        """Health counters live in a minute that a replay finds again, so they stay exact too."""
        time_ms = max(time_ms, self.pipeline.retention_floor(self.state))
        slot = (MINUTES, time_ms - time_ms % MINUTE_MS)
        if raw_offset > self._load(*slot):
            value = self.windows[slot]
            value[name] += 1
            value["o"] = max(value["o"], raw_offset)
            self.counted[name] += 1

    def source(self, source_id: str) -> dict[str, int]:
        """Per source: highest collector offset (`max`) and raw offset (`raw`) seen, event-time watermark."""
        source = self._sources.get(source_id)
        if source is None:
            stored = self.pipeline.cache.get(SOURCES, f"{self.partition}|{source_id}".encode())
            source = self._sources[source_id] = stored or {"max": -1, "raw": -1, "wm": 0}
        return source

    def write(self, event: EventT) -> None:
        """Into the cache (`event`: one of the partition's, for the flush to write as)."""
        for minute, delta in self._deltas.items():
            self._added_delta(delta)
            day = self.pipeline.calendar.start(minute)
            for slot in ((MINUTES, minute), (HOURS, minute - minute % HOUR_MS), (DAYS, day)):
                value = merge_into(self.windows[slot], delta)
                value["o"] = max(value["o"], delta["o"])
        put = self.pipeline.cache.put
        for (name, start), value in self.windows.items():
            key = window_key(self.partition, start)
            put(name, key, value, event)
            if name == MINUTES:
                self.state.dirty.add(key)
        for source_id, value in self._sources.items():
            put(SOURCES, f"{self.partition}|{source_id}".encode(), value, event)
        self.pipeline.metrics.add(self.added, self.failed, self.counted)

    def _load(self, name: str, start: int) -> int:
        """Read a stored window into the batch once; returns the raw offset it held before the batch."""
        slot = (name, start)
        applied = self._applied.get(slot)
        if applied is None:
            stored = self.pipeline.cache.get(name, window_key(self.partition, start))
            self.windows[slot] = stored if stored is not None else empty_window()
            applied = self._applied[slot] = self.windows[slot]["o"]
        return applied


# A restore replays a changelog from its start: compaction keeps it to about the live windows. Kafka
# compacts only closed segments, so they close every 6 hours; a value may wait at most a day to be
# compacted; an expired window's tombstone is kept a day, then goes too.
CHANGELOG_CONFIG = {
    "cleanup.policy": "compact",
    "segment.ms": str(6 * HOUR_MS),
    "max.compaction.lag.ms": str(24 * HOUR_MS),
    "min.cleanable.dirty.ratio": "0.2",
    "delete.retention.ms": str(24 * HOUR_MS),
}


def changelog_specs(settings: WorkerSettings, topics: TopicSettings) -> list[TopicSpec]:
    """The tables' changelog topics, named as Faust names them. Created before Faust starts: when Faust
    creates them itself, a worker can read stale metadata (0 partitions) and crash its agent."""
    return [
        TopicSpec(
            f"{settings.app_id}-{table}-changelog",
            topics.partitions,
            topics.replication_factor,
            dict(CHANGELOG_CONFIG),
        )
        for table in (*WINDOW_TABLES, SOURCES)
    ]
