"""The worker's output records (events, dead letters, closed windows), sent as whole Kafka batches.

Per-record `send` costs Faust and aiokafka about 10 us of Python each (a future, a callback, a
metadata lookup): at 50k events/s that alone would fill a core. The outbox packs one agent batch's
records per (topic, partition) into aiokafka batches as they are added, and hands those over whole
(`send_batch`). It uses Faust's own producer, which Faust flushes before it commits the raw topic's
offsets, so delivery stays at-least-once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import faust
from aiokafka import AIOKafkaProducer

from pioneer_base.batches import BatchPacker

log = logging.getLogger(__name__)


class Outbox:
    def __init__(self, app: faust.App) -> None:
        self.app = app
        self._packers: dict[tuple[str, int], BatchPacker] = {}
        self._unplaced: list[tuple[str, bytes, bytes]] = []
        self._partition_of: dict[tuple[str, bytes], int] = {}
        self.failed_batches = 0

    def add(self, topic: str, key: bytes, value: bytes) -> None:
        partition = self._partition(topic, key)
        if partition is None:
            self._unplaced.append((topic, key, value))
            return
        packer = self._packers.get((topic, partition))
        if packer is None:
            # Faust keeps its aiokafka producer private; `send` would cost the per-record price
            producer: AIOKafkaProducer = self.app.producer._ensure_producer()
            packer = self._packers[topic, partition] = BatchPacker(producer)
        packer.append(key, value)

    @property
    def holds_much(self) -> bool:
        """Whether enough is waiting (a few MB) to send before the batch is done, to bound memory."""
        return sum(len(packer.batches) for packer in self._packers.values()) >= 4

    async def send(self) -> None:
        """Hand everything added so far to the producer (delivery is awaited by Faust's flush)."""
        packers, self._packers = self._packers, {}
        unplaced, self._unplaced = self._unplaced, []
        await asyncio.gather(
            *(
                self._send_partition(packer, topic, partition)
                for (topic, partition), packer in packers.items()
            )
        )
        for topic, key, value in unplaced:  # no metadata for the topic yet: let the producer place them
            await self.app.producer.send(topic, key, value, partition=None, timestamp=None, headers=None)

    async def _send_partition(self, packer: BatchPacker, topic: str, partition: int) -> None:
        """In order within a partition; partitions side by side, since aiokafka holds a new batch back
        until the partition's previous request is answered (one round trip each, in series, adds up)."""
        for batch in packer.close():
            delivery = await packer.producer.send_batch(batch, topic, partition=partition)
            delivery.add_done_callback(self._check_delivery)

    def _partition(self, topic: str, key: bytes) -> int | None:
        """Where the producer would put `key` (murmur2), remembered per key: in pure Python the hash
        costs more than the send, and keys (sessions, sources, windows) repeat."""
        slot = (topic, key)
        partition = self._partition_of.get(slot)
        if partition is None:
            with contextlib.suppress(Exception):  # no metadata for the topic yet
                partition = self.app.producer.key_partition(topic, key).partition
            if partition is not None:
                if len(self._partition_of) > 100_000:
                    self._partition_of.clear()
                self._partition_of[slot] = partition
        return partition

    def _check_delivery(self, delivery: asyncio.Future[object]) -> None:
        if not delivery.cancelled() and delivery.exception() is not None:
            self.failed_batches += 1
            log.error("an output batch was not delivered: %r", delivery.exception())
