"""The Faust worker: raw lines -> parser -> events / dead letters, and windowed aggregate tables.

Throughput: the agent takes batches (`take_events`), decodes envelopes with orjson and runs the same
`LineParser` as `pioneer-telemetry parse`. Each batch folds its events into the windows they touch and
writes every touched window once, so table (and changelog) writes grow with windows, not with events.

Tables are partitioned like the raw topic (by pod): a window key is `<partition>|<window start>`, each
source partition keeps its own partial, and the read API merges partials from every worker. Faust
routes table writes by the current event's partition, while a batch spans partitions: each partition's
writes therefore run in the context of one of its own events (`_acting_for`).

Processing guarantee: at-least-once delivery (Faust flushes the changelog before committing offsets),
made exact by idempotent updates: a window remembers the highest raw offset it absorbed and skips
replayed events at or below it; a source remembers the highest collector offset it delivered, so lines
the collector sent twice are counted once.
"""

from __future__ import annotations

import contextlib
import logging
import time
import weakref
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import faust
import orjson
from faust.streams import _current_event
from faust.types import EventT
from pydantic_settings import SettingsConfigDict

from pioneer_telemetry.config import ComponentSettings, KafkaSettings, state_dir
from streams.aggregate import HOUR_MS, MINUTE_MS, Window, add_event, empty_window, event_time, window_start
from streams.framing import rfc3339_to_ms
from streams.identity import PodMeta
from streams.parser import LineParser
from streams.schema import DeadLetter, PioneerEvent
from streams.settings import ParserSettings
from streams.topics import TopicSettings, TopicSpec

log = logging.getLogger(__name__)

MINUTES = "minutes"
HOURS = "hours"
SOURCES = "sources"


class WorkerSettings(ComponentSettings):
    """`PIONEER_WORKER_*` or the `worker:` YAML section."""

    section: ClassVar[str] = "worker"
    model_config = SettingsConfigDict(env_prefix="PIONEER_WORKER_")

    app_id: str = "pioneer-telemetry"
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    canonical_url: str | None = None  # how other workers reach this one; default http://web_host:web_port
    data_dir: Path = state_dir() / "worker"
    store: Literal["rocksdb", "memory"] = "rocksdb"
    grace_s: float = 60.0  # how far out of order (per source) an event may come before it counts as late
    minute_retention_h: float = 24.0
    hour_retention_days: float = 7.0
    batch_size: int = 5000
    batch_within_s: float = 0.2
    commit_interval_s: float = 1.0
    session_timeout_s: float = 10.0  # how soon the group notices a crashed worker and hands its partitions on
    publish_events: bool = True  # write parsed events to the events topic for downstream consumers


@dataclass
class PartitionState:
    """What a worker keeps in memory per raw partition (rebuilt from replays after a restart)."""

    stream_time: int = 0  # highest event time seen
    last_offset: int = -1
    last_event_at: float = 0.0  # wall clock of the last event processed
    dirty: set[bytes] = field(default_factory=set)  # minute keys changed since they were published
    last_expiry: float = 0.0  # monotonic time of this partition's last retention pass


@contextlib.contextmanager
def _acting_for(event: EventT) -> Iterator[None]:
    """Faust tables pick the store and changelog partition from the current event; set it explicitly."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def window_key(partition: int, start: int) -> bytes:
    return f"{partition}|{start}".encode()


def parse_window_key(key: bytes) -> tuple[int, int]:
    partition, _, start = key.decode().partition("|")
    return int(partition), int(start)


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
        self.sources = app.Table(SOURCES, key_type=bytes, value_type=bytes, partitions=topics.partitions)
        self.topics = topics
        self.partitions: dict[int, PartitionState] = defaultdict(PartitionState)
        self._pods: dict[tuple[Any, ...], PodMeta] = {}
        self.last_crash: str | None = None  # the agent's last crash, for the health endpoint
        self._partition_of: dict[tuple[str, bytes], int] = {}

    async def process(self, events: list[EventT]) -> None:
        by_partition: dict[int, list[EventT]] = defaultdict(list)
        for event in events:
            by_partition[event.message.partition].append(event)
        for partition, group in by_partition.items():
            with _acting_for(group[-1]):
                await self._process_partition(partition, group)

    async def _process_partition(self, partition: int, events: list[EventT]) -> None:
        state = self.partitions[partition]
        batch = _PartitionBatch(self, partition, state)
        for event in events:
            raw_offset = event.message.offset
            state.last_offset = raw_offset
            result, source_id, source_offset, runtime_ms = self._parse(event, partition)
            if result is None:
                continue
            if isinstance(result, DeadLetter):
                batch.count("dead_letters", raw_offset, runtime_ms)
                await self._publish(self.topics.deadletter, source_id.encode(), orjson.dumps(result))
                continue
            when = event_time(result)
            source = batch.source(source_id)
            if raw_offset > source["raw"]:  # else replayed after a restart: the windows' offsets decide
                if source_offset <= source["max"]:
                    batch.count("duplicates", raw_offset, when)  # the collector delivered it twice
                    continue
                source["max"], source["raw"] = source_offset, raw_offset
                if when < source["wm"] - self.settings.grace_s * 1000 or when < self.retention_floor(state):
                    batch.count("late", raw_offset, when)
                    continue
                source["wm"] = max(source["wm"], when)
            state.stream_time = max(state.stream_time, when)
            state.last_event_at = time.time()
            for table, size in ((self.minutes, MINUTE_MS), (self.hours, HOUR_MS)):
                value, applied = batch.window(table, size, when)
                if raw_offset > applied:
                    add_event(value, result)
                    value["o"] = max(value["o"], raw_offset)
            if self.settings.publish_events:
                await self._publish(
                    self.topics.events, (result.session_id or "").encode(), orjson.dumps(result)
                )
        batch.write()
        await self._publish_closed(partition, state, batch.windows)
        self._expire(partition, state)

    async def _publish(self, topic: str, key: bytes, value: bytes) -> None:
        """Straight to Faust's producer: `Topic.send` costs far more per message (callbacks, futures).
        Still at-least-once: Faust flushes this producer before it commits the raw topic's offsets.
        Partitions are placed like the producer would (murmur2 of the key), remembered per key: in
        pure Python the hash costs more than the send, and keys (sessions, sources) repeat."""
        slot = (topic, key)
        partition = self._partition_of.get(slot)
        if partition is None:
            with contextlib.suppress(Exception):  # no metadata for the topic yet: let send() place it
                partition = self.app.producer.key_partition(topic, key).partition
            if partition is not None:
                if len(self._partition_of) > 100_000:
                    self._partition_of.clear()
                self._partition_of[slot] = partition
        await self.app.producer.send(topic, key, value, partition=partition, timestamp=None, headers=None)

    def _parse(self, event: EventT, partition: int) -> tuple[PioneerEvent | DeadLetter | None, str, int, int]:
        """One raw record, our collector's envelope or Fluent Bit's kafka output (no `source`): the
        parse result, the line's source position, and its runtime time (ms; else the record's)."""
        message = event.message
        source_id, source_offset = f"kafka:{self.raw_topic_name}:{partition}", message.offset
        line: Any = event.value
        pod, runtime_time = PodMeta(), None
        with contextlib.suppress(orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            envelope = orjson.loads(event.value)
            line = envelope["log"]
            source = envelope.get("source") or {}
            source_id = source.get("id") or source_id
            source_offset = source.get("offset", source_offset)
            pod = self._pod(envelope.get("kubernetes") or {})
            runtime_time = envelope.get("time") if isinstance(envelope.get("time"), str) else None
        if not isinstance(line, (str, bytes)):
            line = str(line)
        runtime_ms = (rfc3339_to_ms(runtime_time) if runtime_time else None) or int(message.timestamp * 1000)
        result = self.parser.parse(line, source_id, source_offset, pod, runtime_time)
        return result, source_id, source_offset, runtime_ms

    def _pod(self, kubernetes: dict[str, Any]) -> PodMeta:
        annotations, labels = kubernetes.get("annotations") or {}, kubernetes.get("labels") or {}
        cache_key = (
            kubernetes.get("pod_name"),
            kubernetes.get("namespace_name"),
            kubernetes.get("container_name"),
            annotations.get("hub.jupyter.org/username") if isinstance(annotations, dict) else None,
            labels.get("hub.jupyter.org/username") if isinstance(labels, dict) else None,
        )
        pod = self._pods.get(cache_key)
        if pod is None:
            if len(self._pods) > 10_000:
                self._pods.clear()
            pod = self._pods[cache_key] = PodMeta.from_fluent_bit(kubernetes)
        return pod

    def retention_floor(self, state: PartitionState) -> int:
        return state.stream_time - int(self.settings.minute_retention_h * HOUR_MS)

    async def _publish_closed(
        self, partition: int, state: PartitionState, windows: dict[tuple[Any, bytes], Window]
    ) -> None:
        """Windows whose end + grace is behind the partition's stream time go to the aggregates topic
        (compacted: a window updated again later is simply published again)."""
        horizon = state.stream_time - int(self.settings.grace_s * 1000) - MINUTE_MS
        for key in sorted(state.dirty):
            _, start = parse_window_key(key)
            if start > horizon:
                continue
            value = windows.get((self.minutes, key))
            stored = orjson.dumps(value) if value is not None else self.minutes.get(key)
            state.dirty.discard(key)
            if stored is not None:
                await self._publish(self.topics.aggregates, b"minute|%d|%d" % (start, partition), stored)

    def _expire(self, partition: int, state: PartitionState) -> None:
        """Drop minute windows after `minute_retention_h` and hour windows after `hour_retention_days`
        of stream time; checked once a minute, per partition, in that partition's event context."""
        now = time.monotonic()
        if now - state.last_expiry < 60:
            return
        state.last_expiry = now
        limits = (
            (self.minutes, state.stream_time - int(self.settings.minute_retention_h * HOUR_MS)),
            (self.hours, state.stream_time - int(self.settings.hour_retention_days * 24 * HOUR_MS)),
        )
        for table, oldest in limits:
            for key in [
                k for k in table if parse_window_key(k)[0] == partition and parse_window_key(k)[1] < oldest
            ]:
                del table[key]


class _PartitionBatch:
    """One partition's share of a batch: every window and source it touches is read once and written
    once, however many events touch it."""

    def __init__(self, pipeline: Pipeline, partition: int, state: PartitionState) -> None:
        self.pipeline = pipeline
        self.partition = partition
        self.state = state
        self.windows: dict[tuple[Any, bytes], Window] = {}  # (table, key) -> value being updated
        self._applied: dict[tuple[Any, bytes], int] = {}  # raw offset the stored value already holds
        self._sources: dict[bytes, dict[str, int]] = {}

    def window(self, table: Any, size: int, time_ms: int) -> tuple[Window, int]:
        """The window holding `time_ms`, and the highest raw offset it held before this batch."""
        slot = (table, window_key(self.partition, window_start(time_ms, size)))
        if slot not in self.windows:
            stored = table.get(slot[1])
            self.windows[slot] = orjson.loads(stored) if stored is not None else empty_window()
            self._applied[slot] = self.windows[slot]["o"]
        return self.windows[slot], self._applied[slot]

    def count(self, name: str, raw_offset: int, time_ms: int) -> None:
        """Health counters live in a minute that a replay finds again, so they stay exact too."""
        floor = self.pipeline.retention_floor(self.state)
        value, applied = self.window(self.pipeline.minutes, MINUTE_MS, max(time_ms, floor))
        if raw_offset > applied:
            value[name] += 1
            value["o"] = max(value["o"], raw_offset)

    def source(self, source_id: str) -> dict[str, int]:
        """Per source: highest collector offset (`max`) and raw offset (`raw`) seen, event-time watermark."""
        key = f"{self.partition}|{source_id}".encode()
        if key not in self._sources:
            stored = self.pipeline.sources.get(key)
            self._sources[key] = orjson.loads(stored) if stored else {"max": -1, "raw": -1, "wm": 0}
        return self._sources[key]

    def write(self) -> None:
        for (table, key), value in self.windows.items():
            table[key] = orjson.dumps(value)
            if table is self.pipeline.minutes:
                self.state.dirty.add(key)
        for key, value in self._sources.items():
            self.pipeline.sources[key] = orjson.dumps(value)


def changelog_specs(settings: WorkerSettings, topics: TopicSettings) -> list[TopicSpec]:
    """The tables' changelog topics, named as Faust names them. Created before Faust starts: when Faust
    creates them itself, a worker can read stale metadata (0 partitions) and crash its agent."""
    return [
        TopicSpec(
            f"{settings.app_id}-{table}-changelog",
            topics.partitions,
            topics.replication_factor,
            {"cleanup.policy": "compact"},
        )
        for table in (MINUTES, HOURS, SOURCES)
    ]


def create_app(
    settings: WorkerSettings | None = None,
    kafka: KafkaSettings | None = None,
    topics: TopicSettings | None = None,
    parser: ParserSettings | None = None,
) -> faust.App:
    """The worker's Faust app, with its agent, tables and read API."""
    from streams.api import register_api  # noqa: PLC0415 (the API needs the pipeline built here)

    settings = settings or WorkerSettings()
    kafka = kafka or KafkaSettings()
    topics = topics or TopicSettings()
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{server}" for server in kafka.bootstrap_servers.split(",")],
        store="rocksdb://" if settings.store == "rocksdb" else "memory://",
        datadir=str(settings.data_dir),
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        canonical_url=settings.canonical_url or f"http://{settings.web_host}:{settings.web_port}",
        topic_partitions=topics.partitions,
        topic_replication_factor=topics.replication_factor,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=settings.commit_interval_s,
        broker_session_timeout=settings.session_timeout_s,
        producer_linger=0.05,  # batch the events topic's records (default: one request per record)
        producer_max_batch_size=1024 * 1024,
        broker_heartbeat_interval=settings.session_timeout_s / 3,
        processing_guarantee="at_least_once",
        key_serializer="raw",
        value_serializer="raw",
        autodiscover=False,
        web_in_thread=False,
    )
    pipeline = Pipeline(app, settings, LineParser(parser or ParserSettings()), topics)
    raw = app.topic(topics.raw, key_type=bytes, value_type=bytes, partitions=topics.partitions)

    @app.agent(raw, name="pioneer-aggregate")
    async def aggregate(stream: faust.StreamT[bytes]) -> None:
        async for events in stream.take_events(settings.batch_size, within=settings.batch_within_s):
            try:
                await pipeline.process(list(events))
            except Exception as error:
                # Faust restarts a crashed agent and the web server keeps answering: say so in /health
                pipeline.last_crash = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {error!r}"
                raise

    register_api(app, pipeline)
    return app
