"""The agent's table writes, held in memory as decoded values until Faust commits the raw topic.

Writing every window a batch touched (serialised, into RocksDB, onto the changelog) made short batches
expensive: an hour or a day window was rewritten for every few events, and a batch waited for the
changelog's produce requests. The cache keeps the values the agent works with and writes each one once
per commit: `flush` runs inside the producer flush that Faust does just before it commits offsets
(`streams.faust_transport`), so every committed offset's windows are on the changelog first. A crash
loses only values no commit covered, and the raw topic replays their events; the windows' offsets
(`o`) skip what their stored values already hold.

Values read or written lately also stay decoded (`recent`, bounded): the read API asks for the same
windows again and again (a dashboard, a long-polling reader after every batch), and decoding a big
window costs more than merging it. Faust's own changelog recovery writes to the stores underneath, so
`recent` is emptied when partitions are revoked and again when a rebalance's recovery completes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import weakref
from collections import defaultdict
from collections.abc import Iterator, Mapping
from typing import Any

import faust
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata
from faust.streams import _current_event
from faust.types import TP, EventT

from pioneer_base.batches import BatchPacker

log = logging.getLogger(__name__)


@contextlib.contextmanager
def acting_for(event: EventT) -> Iterator[None]:
    """Faust tables pick the store and changelog partition from the current event; set it explicitly."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def key_partition(key: bytes) -> int:
    """Keys are `<raw partition>|...`: windows, sources."""
    return int(key[: key.index(b"|")])


RECENT_PER_TABLE = 4096  # decoded values kept per table (about a day of one partition's minutes)


class TableCache:
    def __init__(self, tables: Mapping[str, faust.Table]) -> None:
        self.tables = tables
        self.pending: dict[str, dict[bytes, Any]] = {name: {} for name in tables}  # None: deleted
        self.recent: dict[str, dict[bytes, Any]] = {name: {} for name in tables}  # as stored, decoded
        self._events: dict[int, EventT] = {}  # per partition, an event to write its keys as
        self._sending = asyncio.Lock()  # flushes hand their batches over in turn: a key's values in order

    def get(self, name: str, key: bytes) -> Any | None:
        """The value as the agent last left it (decoded), else as stored; None if there is none."""
        pending = self.pending[name]
        if key in pending:
            return pending[key]
        recent = self.recent[name]
        if key in recent:
            return recent[key]
        stored = self.tables[name].get(key)
        value = orjson.loads(stored) if stored is not None else None
        self._remember(name, key, value)
        return value

    def _remember(self, name: str, key: bytes, value: Any) -> None:
        recent = self.recent[name]
        if len(recent) >= RECENT_PER_TABLE:
            recent.clear()  # simpler than an LRU, and a full sweep of a day of minutes is rare
        recent[key] = value

    def forget_reads(self) -> None:
        """Faust's recovery is about to write, or has written, to the stores underneath."""
        for recent in self.recent.values():
            recent.clear()

    def put(self, name: str, key: bytes, value: Any, event: EventT) -> None:
        """Keep `value` (not to be changed after) for the next flush; `event`: one of its partition's."""
        self.pending[name][key] = value
        self._events[key_partition(key)] = event

    def delete(self, name: str, key: bytes, event: EventT) -> None:
        self.put(name, key, None, event)

    def items(self, name: str, prefix: bytes) -> Iterator[tuple[bytes, Any]]:
        """Every live (key, decoded value) starting with `prefix`, pending values first."""
        pending = self.pending[name]
        for key, value in pending.items():
            if key.startswith(prefix) and value is not None:
                yield key, value
        for key, stored in self.tables[name].items():
            if key.startswith(prefix) and key not in pending:
                yield key, orjson.loads(stored)

    def keys(self, name: str, partition: int) -> set[bytes]:
        """The live keys of one partition, stored or pending."""
        prefix = f"{partition}|".encode()
        live = {key for key in self.tables[name] if key.startswith(prefix)}
        for key, value in self.pending[name].items():
            if key.startswith(prefix):
                if value is None:
                    live.discard(key)
                else:
                    live.add(key)
        return live

    async def flush(self, producer: AIOKafkaProducer) -> list[asyncio.Future[Any]]:
        """Write every pending value to its store and its changelog; returns the changelog deliveries.

        Each changelog partition's writes go as whole aiokafka batches (`send_batch`), as the outbox's
        do: through Faust (`Table.send_changelog`) each record cost a future, a callback and a RocksDB
        write of the store's offset, and its buffer handed them to aiokafka one per turn of the event
        loop, so a commit behind a busy agent waited up to 1.8 s. A delivered batch's last offset becomes
        the store's persisted offset, as Faust keeps it: a restart replays the changelog from there."""
        by_partition: dict[int, list[tuple[str, bytes, Any]]] = defaultdict(list)
        for name, pending in self.pending.items():
            for key, value in pending.items():
                by_partition[key_partition(key)].append((name, key, value))
        self.pending = {name: {} for name in self.tables}
        packers: dict[tuple[str, int], BatchPacker] = {}
        for partition, writes in by_partition.items():
            with acting_for(self._events[partition]):  # the store picks its partition's database by it
                for name, key, value in writes:
                    data = self.tables[name].data
                    if value is not None:
                        encoded: bytes | None = orjson.dumps(value)
                        data[key] = encoded
                    elif key in data:
                        encoded = None  # a tombstone
                        del data[key]
                    else:
                        continue
                    packer = packers.get((name, partition))
                    if packer is None:
                        packer = packers[name, partition] = BatchPacker(producer)
                    packer.append(key, encoded)
                    self._remember(name, key, value)
        self._events.clear()
        async with self._sending:
            sent = await asyncio.gather(
                *(
                    self._send(producer, name, partition, packer)
                    for (name, partition), packer in packers.items()
                )
            )
        return [delivery for deliveries in sent for delivery in deliveries]

    async def _send(
        self, producer: AIOKafkaProducer, name: str, partition: int, packer: BatchPacker
    ) -> list[asyncio.Future[Any]]:
        """One changelog partition's batches, in order (aiokafka sends a partition's next batch once
        the last one is answered); partitions side by side."""
        store = self.tables[name].data
        tp = TP(self.tables[name].changelog_topic.get_topic_name(), partition)

        def persisted(last: int, delivery: asyncio.Future[RecordMetadata]) -> None:
            if not delivery.cancelled() and delivery.exception() is None:
                store.set_persisted_offset(tp, delivery.result().offset + last)

        deliveries = []
        for batch in packer.close():
            delivery = await producer.send_batch(batch, tp.topic, partition=partition)
            delivery.add_done_callback(functools.partial(persisted, batch.record_count() - 1))
            deliveries.append(delivery)
        return deliveries

    def forget(self, partitions: set[int]) -> None:
        """Drop what is pending for partitions this worker no longer owns: with no commit since, their
        new owner replays those events from the committed offset."""
        for pending in self.pending.values():
            for key in [key for key in pending if key_partition(key) in partitions]:
                del pending[key]
        for partition in partitions:
            self._events.pop(partition, None)
