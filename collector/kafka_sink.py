"""The collector's only way into Kafka: filtered, redacted envelopes in acknowledged batches.

Lines are encoded once (orjson) into Fluent Bit-shaped envelopes, keyed by pod and placed with Kafka's
default (murmur2) partitioner, so one pod's lines stay in order on one partition and a Java client or
Fluent Bit would place them identically. Consecutive lines of one source share a Kafka record (a JSON
array of envelopes, up to `record_lines`; see `streams.envelope`): every consumer's per-message cost,
Faust's above all, is then paid once per batch of lines. `record_lines=1` writes one bare envelope per
record, exactly like Fluent Bit. Batches are built here and handed to aiokafka whole (`send_batch`):
per-message `send` costs too much Python time for 100k lines/s.

Memory is bounded: `submit` waits while more than `buffer_bytes` are unacknowledged, which stops the
sources from reading (backpressure) instead of dropping anything. A batch Kafka does not acknowledge
(broker down past aiokafka's own retries) is sent again, with backoff, until it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from collector.edge import MAX_LOG_CHARS, PodFilter, edge_line, may_be_event
from collector.lines import LogLine
from collector.metrics import COLLECTOR_METRICS as METRICS
from pioneer_base.batches import build_batches

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Record:
    """Envelopes of consecutive lines of one source, sent as one Kafka record."""

    key: bytes
    envelopes: list[bytes] = field(default_factory=list)
    size: int = 0

    def value(self, bare: bool) -> bytes:
        return self.envelopes[0] if bare else b"[" + b",".join(self.envelopes) + b"]"


@dataclass(slots=True)
class _Batch:
    partition: int
    records: list[_Record] = field(default_factory=list)
    filling: dict[str, _Record] = field(default_factory=dict)  # source id -> its record still open
    lines: int = 0
    size: int = 0
    acked: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class KafkaSink:
    """Implements `collector.lines.LineSink` on an aiokafka producer."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        pod_filter: PodFilter,
        *,
        forward_all: bool = False,
        batch_bytes: int = 512 * 1024,
        record_lines: int = 100,
        record_bytes: int = 128 * 1024,
        linger_s: float = 0.05,
        buffer_bytes: int = 16 * 1024 * 1024,
        max_log_chars: int = MAX_LOG_CHARS,
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.pod_filter = pod_filter
        self.forward_all = forward_all
        self.batch_bytes = batch_bytes
        self.record_lines = record_lines
        self.record_bytes = record_bytes
        self.linger_s = linger_s
        self.buffer_bytes = buffer_bytes
        self.max_log_chars = max_log_chars
        self._partitioner = DefaultPartitioner()
        self._partitions: list[int] = []
        self._ordered: dict[int, asyncio.Lock] = {}  # aiokafka wakes all waiters of a partition at once
        self._partition_of: dict[bytes, int] = {}
        self._open: dict[int, _Batch] = {}
        self._unacked_bytes = 0
        self._room = asyncio.Event()
        self._room.set()
        self._deliveries: set[asyncio.Task[None]] = set()
        self._linger_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        partitions = await self.producer.partitions_for(self.topic)
        if not partitions:
            raise RuntimeError(
                f"topic {self.topic!r} does not exist; run `pioneer-telemetry up` or create it"
            )
        self._partitions = sorted(partitions)
        self._ordered = {partition: asyncio.Lock() for partition in self._partitions}
        self._linger_task = asyncio.create_task(self._linger(), name="sink-linger")

    async def submit(self, lines: Sequence[LogLine]) -> asyncio.Future[None]:
        await self._room.wait()
        touched: dict[int, _Batch] = {}
        filtered = 0
        for line in lines:
            if not (self.forward_all or may_be_event(line.log)) or not self.pod_filter.accepts(
                line.kubernetes
            ):
                filtered += 1
                continue
            key, envelope = self._encode(line)
            partition = self._partition_of.get(key)
            if partition is None:  # murmur2 in pure Python costs ~6 us; a node has few pods
                if len(self._partition_of) > 10_000:
                    self._partition_of.clear()
                partition = self._partition_of[key] = self._partitioner(
                    key, self._partitions, self._partitions
                )
            batch = self._open.get(partition)
            if batch is None:
                batch = self._open[partition] = _Batch(partition)
            record = batch.filling.get(line.source_id)
            if record is None or record.key != key:
                record = batch.filling[line.source_id] = _Record(key)
                batch.records.append(record)
            record.envelopes.append(envelope)
            record.size += len(envelope) + 1
            if len(record.envelopes) >= self.record_lines or record.size >= self.record_bytes:
                del batch.filling[line.source_id]
            batch.lines += 1
            batch.size += len(envelope) + len(key)
            touched[partition] = batch
            if batch.size >= self.batch_bytes:
                self._send(batch)
        METRICS.lines_received.inc(len(lines))
        METRICS.lines_filtered.inc(filtered)
        return _when_all([batch.acked for batch in touched.values()])

    async def flush(self) -> None:
        """Send what is open and wait until Kafka acknowledged everything submitted so far."""
        for batch in list(self._open.values()):
            self._send(batch)
        while self._deliveries:
            await asyncio.gather(*self._deliveries)

    async def close(self) -> None:
        if self._linger_task is not None:
            self._linger_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._linger_task
        await self.flush()

    @property
    def unacked_bytes(self) -> int:
        return self._unacked_bytes

    def _encode(self, line: LogLine) -> tuple[bytes, bytes]:
        text, truncated_from = edge_line(line.log, self.max_log_chars)
        if truncated_from is not None:
            line.extra["truncated_from"] = truncated_from
        envelope = {
            "log": text,
            "stream": line.stream,
            "time": line.time,
            "kubernetes": line.kubernetes,
            "source": {"id": line.source_id, "offset": line.offset},
            **line.extra,
        }
        key = line.kubernetes.get("pod_name") or line.source_id
        return key.encode(), orjson.dumps(envelope)

    def _send(self, batch: _Batch) -> None:
        del self._open[batch.partition]
        self._unacked_bytes += batch.size
        if self._unacked_bytes >= self.buffer_bytes:
            self._room.clear()
        METRICS.buffered_bytes.set(self._unacked_bytes)
        task = asyncio.create_task(self._deliver(batch))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, batch: _Batch) -> None:
        """Send one batch and wait for its ack, holding its partition (FIFO) meanwhile: a resent batch
        can never overtake or be overtaken by a newer one, so every source's lines stay in order.
        (aiokafka keeps one request per partition in flight anyway.)"""
        backoff = 0.5
        async with self._ordered[batch.partition]:
            records = [(record.key, record.value(self.record_lines == 1)) for record in batch.records]
            while True:
                try:
                    acks = [
                        await self.producer.send_batch(kafka_batch, self.topic, partition=batch.partition)
                        for kafka_batch in build_batches(self.producer, records)
                    ]
                    await asyncio.gather(*acks)
                    break
                except KafkaError as error:
                    METRICS.send_retries.inc()
                    log.warning(
                        "batch of %d lines not acknowledged (%s); retrying in %.1f s",
                        batch.lines,
                        error,
                        backoff,
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
        self._unacked_bytes -= batch.size
        METRICS.buffered_bytes.set(self._unacked_bytes)
        METRICS.lines_acked.inc(batch.lines)
        if self._unacked_bytes < self.buffer_bytes:
            self._room.set()
        batch.acked.set_result(None)

    async def _linger(self) -> None:
        while True:
            await asyncio.sleep(self.linger_s)
            for batch in list(self._open.values()):
                self._send(batch)


def _when_all(futures: list[asyncio.Future[None]]) -> asyncio.Future[None]:
    """A future done when all `futures` are; unlike gather, cancelling it leaves the shared ones alone."""
    combined: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    remaining = len(futures)

    def one_done(_: asyncio.Future[None]) -> None:
        nonlocal remaining
        remaining -= 1
        if remaining == 0 and not combined.done():
            combined.set_result(None)

    if not futures:
        combined.set_result(None)
    for future in futures:
        future.add_done_callback(one_done)
    return combined
