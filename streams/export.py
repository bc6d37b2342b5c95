"""`pioneer-telemetry export`: the events topic as Parquet files for analysis, a partition per day.

Each run reads every partition from where the last run stopped (the offsets in `<out>/_export_state.json`)
up to the end it found at its start, so a nightly run appends only what is new. Files are written in
chunks of at most `chunk_messages` records per partition; a chunk's files are named after the offsets
it starts from, and the state moves past it only once they are on disk: a run interrupted mid-chunk
writes the same files again, never a second copy of them.

Deduplication on `event_id`: the worker publishes events at least once, and a replay after a crash lands
on the same partition (the key is the session) after the original. An event id is its source's digest
followed by its line's offset in that source (`streams.parser.event_id`), and lines of a source are
counted in order, so per partition and source it is enough to remember the highest offset exported.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from pioneer_base.config import ComponentSettings, KafkaSettings
from pioneer_base.kafka_access import check_access
from streams.aggregate import DayCalendar
from streams.schema import PioneerEvent

log = logging.getLogger(__name__)

STATE_FILE = "_export_state.json"

# The Parquet schema of PioneerEvent: its fields in order; eventInfo and notebook content, whose shapes
# vary by event name, as JSON text.
EVENT_SCHEMA = pa.schema(
    [
        ("schema_version", pa.string()),
        ("event_id", pa.string()),
        ("event_name", pa.string()),
        ("event_time_ms", pa.int64()),
        ("log_time_ms", pa.int64()),
        ("session_id", pa.string()),
        ("notebook_path", pa.string()),
        ("cell_ids", pa.list_(pa.string())),
        ("cell_indices", pa.list_(pa.int64())),
        ("success", pa.bool_()),
        ("error_name", pa.string()),
        ("user", pa.string()),
        ("pod", pa.string()),
        ("namespace", pa.string()),
        ("container", pa.string()),
        ("source", pa.struct([("id", pa.string()), ("offset", pa.int64())])),
        ("info", pa.string()),
        ("notebook_content", pa.string()),
        ("time", pa.timestamp("ms", tz="UTC")),  # the event time the windows use: log time, else eventTime
    ]
)


class ExportSettings(ComponentSettings):
    """`PIONEER_EXPORT_*` or the `export:` YAML section."""

    section: ClassVar[str] = "export"
    model_config = SettingsConfigDict(env_prefix="PIONEER_EXPORT_")

    out_dir: Path = Path("pioneer-export")
    topic: str = "pioneer.events"
    from_ms: int | None = None  # events before it are skipped (and not exported by later runs either)
    to_ms: int | None = None
    day_time_zone: str = "UTC"  # the `date=` partitions: days of this zone, as the worker's day windows
    chunk_messages: int = Field(default=200_000, gt=0)


@dataclass
class ExportState:
    """Where the next run starts, and per partition and source the highest line offset exported."""

    topic: str
    offsets: dict[int, int] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)  # "<partition>|<source digest>" -> line offset

    @classmethod
    def load(cls, directory: Path, topic: str) -> ExportState:
        path = directory / STATE_FILE
        if not path.is_file():
            return cls(topic)
        data = orjson.loads(path.read_bytes())
        if data["topic"] != topic:
            raise ValueError(
                f"{directory} holds an export of {data['topic']}, not {topic}: use another folder"
            )
        return cls(topic, {int(p): o for p, o in data["offsets"].items()}, data["seen"])

    def save(self, directory: Path) -> None:
        path = directory / STATE_FILE
        temporary = path.with_suffix(".tmp")
        offsets = {str(partition): offset for partition, offset in self.offsets.items()}
        temporary.write_bytes(orjson.dumps({"topic": self.topic, "offsets": offsets, "seen": self.seen}))
        temporary.replace(path)


@dataclass(frozen=True)
class ExportResult:
    read: int  # records read from the topic
    exported: int  # events written
    duplicates: int  # records skipped: an event already exported
    outside: int  # records skipped: outside from_ms/to_ms
    files: list[Path]


def event_row(event: PioneerEvent) -> dict[str, Any]:
    """A PioneerEvent as a row of EVENT_SCHEMA."""
    row: dict[str, Any] = dict(event)
    for name in ("info", "notebook_content"):
        row[name] = None if event[name] is None else orjson.dumps(event[name]).decode()
    log_time = event["log_time_ms"]
    row["time"] = log_time if log_time is not None else event["event_time_ms"]
    return row


class Exporter:
    """One run: read what is new, write it by day, move the state past it."""

    def __init__(self, settings: ExportSettings, kafka: KafkaSettings) -> None:
        self.settings = settings
        self.kafka = kafka
        self.calendar = DayCalendar(settings.day_time_zone)

    async def run(self, progress: Callable[[int, int], None] = lambda done, total: None) -> ExportResult:
        """Export; `progress(records done, records to do)` is called as it goes."""
        out = self.settings.out_dir
        out.mkdir(parents=True, exist_ok=True)
        state = ExportState.load(out, self.settings.topic)
        await check_access(self.kafka)
        consumer = AIOKafkaConsumer(**self.kafka.client_options(), enable_auto_commit=False, group_id=None)
        await consumer.start()
        try:
            partitions = [TopicPartition(self.settings.topic, p) for p in await self._partitions()]
            consumer.assign(partitions)
            starts = await consumer.beginning_offsets(partitions)
            ends = await consumer.end_offsets(partitions)
            for tp in partitions:
                state.offsets[tp.partition] = max(state.offsets.get(tp.partition, 0), starts[tp])
            total = sum(max(ends[tp] - state.offsets[tp.partition], 0) for tp in partitions)
            counts = {"read": 0, "exported": 0, "duplicates": 0, "outside": 0}
            files: list[Path] = []
            while any(state.offsets[tp.partition] < ends[tp] for tp in partitions):
                # the chunk's files are named after where it starts: the same names when a run retries it
                name = hashlib.blake2b(orjson.dumps(sorted(state.offsets.items())), digest_size=8).hexdigest()
                rows = await self._read_chunk(consumer, partitions, ends, state, counts)
                files += self._write_chunk(rows, name)
                state.save(out)
                progress(counts["read"], total)
            return ExportResult(
                counts["read"], counts["exported"], counts["duplicates"], counts["outside"], files
            )
        finally:
            await consumer.stop()

    async def _partitions(self) -> list[int]:
        admin = AIOKafkaAdminClient(**self.kafka.client_options(), client_id=f"{self.kafka.client_id}-export")
        await admin.start()
        try:
            (described,) = await admin.describe_topics([self.settings.topic])
        finally:
            await admin.close()
        if described["error_code"] != 0 or not described["partitions"]:
            raise ValueError(f"topic {self.settings.topic} does not exist")
        return sorted(p["partition"] for p in described["partitions"])

    async def _read_chunk(
        self,
        consumer: AIOKafkaConsumer,
        partitions: list[TopicPartition],
        ends: dict[TopicPartition, int],
        state: ExportState,
        counts: dict[str, int],
    ) -> dict[date, list[dict[str, Any]]]:
        """Up to chunk_messages records of each partition, from the state's offsets: rows by day."""
        rows: dict[date, list[dict[str, Any]]] = defaultdict(list)
        limits = {
            tp: min(ends[tp], state.offsets[tp.partition] + self.settings.chunk_messages) for tp in partitions
        }
        pending = {tp for tp in partitions if state.offsets[tp.partition] < limits[tp]}
        for tp in pending:  # the last chunk may have fetched (and dropped) records past its limit
            consumer.seek(tp, state.offsets[tp.partition])
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=2000, max_records=10_000)
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= limits[tp]:
                        break
                    state.offsets[tp.partition] = record.offset + 1
                    counts["read"] += 1
                    self._take(tp.partition, record.value, state, rows, counts)
            for tp in list(pending):
                if state.offsets[tp.partition] >= limits[tp]:
                    pending.discard(tp)
                    consumer.pause(tp)
        consumer.resume(*partitions)
        return rows

    def _take(
        self,
        partition: int,
        value: bytes,
        state: ExportState,
        rows: dict[date, list[dict[str, Any]]],
        counts: dict[str, int],
    ) -> None:
        event: PioneerEvent = orjson.loads(value)
        key = f"{partition}|{event['event_id'][:16]}"
        line_offset = int(event["event_id"][16:], 16)
        if line_offset <= state.seen.get(key, -1):
            counts["duplicates"] += 1
            return
        state.seen[key] = line_offset
        row = event_row(event)
        settings = self.settings
        if (settings.from_ms is not None and row["time"] < settings.from_ms) or (
            settings.to_ms is not None and row["time"] >= settings.to_ms
        ):
            counts["outside"] += 1
            return
        day = (
            datetime.fromtimestamp(self.calendar.start(row["time"]) / 1000, UTC)
            .astimezone(self.calendar.zone)
            .date()
        )
        rows[day].append(row)
        counts["exported"] += 1

    def _write_chunk(self, rows: dict[date, list[dict[str, Any]]], name: str) -> list[Path]:
        files = []
        for day, day_rows in sorted(rows.items()):
            directory = self.settings.out_dir / f"date={day.isoformat()}"
            directory.mkdir(exist_ok=True)
            path = directory / f"part-{name}.parquet"
            temporary = path.with_suffix(".tmp")
            pq.write_table(pa.Table.from_pylist(day_rows, schema=EVENT_SCHEMA), temporary, compression="zstd")
            temporary.replace(path)
            files.append(path)
        return files


def run_export(
    settings: ExportSettings, kafka: KafkaSettings, progress: Callable[[int, int], None]
) -> ExportResult:
    return asyncio.run(Exporter(settings, kafka).run(progress))
