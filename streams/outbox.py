"""The worker's output records (events, dead letters, closed windows), sent as whole Kafka batches.

Per-record `send` costs Faust and aiokafka about 10 us of Python each (a future, a callback, a
metadata lookup): at 50k events/s that alone would fill a core. The outbox packs one agent batch's
records per (topic, partition) into aiokafka batches as they are added, and hands those over whole
(`send_batch`). It uses Faust's own producer, which Faust flushes before it commits the raw topic's
offsets, so delivery stays at-least-once.

Handing over happens in the background (`send_soon`), one agent batch after the other: aiokafka holds
a partition's next batch until its last request is answered (one at a time, with idempotence), and
waiting for that in the agent would stop the counting meanwhile. `delivered` (run by the producer's
flush, before every commit) waits until the cluster acknowledged everything handed over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import faust
from aiokafka import AIOKafkaProducer

from pioneer_base.batches import BatchPacker

log = logging.getLogger(__name__)


HOLDS_MUCH_BYTES = 4 * 1024 * 1024  # held before the agent stops mid-batch to hand them over
MAX_QUEUED_SENDS = 8  # agent batches waiting to be handed over before the agent waits for them


class Outbox:
    def __init__(self, app: faust.App) -> None:
        self.app = app
        self._packers: dict[tuple[str, int], BatchPacker] = {}
        self._unplaced: list[tuple[str, bytes, bytes]] = []
        self._partition_of: dict[tuple[str, bytes], int] = {}
        self._sending: asyncio.Task[None] | None = None  # the last send handed to the background
        self._queued = 0
        self.error: BaseException | None = None  # a send that failed: the agent stops on it
        self.failed_batches = 0

    def add(self, topic: str, key: bytes, value: bytes) -> None:
        partition = self._partition(topic, key)
        if partition is None:
            self._unplaced.append((topic, key, value))
            return
        packer = self._packers.get((topic, partition))
        if packer is None:
            packer = self._packers[topic, partition] = BatchPacker(self.producer)
        packer.append(key, value)

    @property
    def producer(self) -> AIOKafkaProducer:
        """Faust's aiokafka producer, which it keeps private: `send` would cost the per-record price."""
        return self.app.producer._ensure_producer()

    @property
    def holds_much(self) -> bool:
        """Whether enough is waiting (a few MB) to send before the batch is done, to bound memory.

        In bytes, not batches: every partition holding a record has a batch, so four of them would count
        as much, and the agent would wait for the producer (a round trip, or all of a slow produce)."""
        return sum(packer.size for packer in self._packers.values()) >= HOLDS_MUCH_BYTES

    async def send_soon(self) -> None:
        """Hand everything added so far to the producer in the background, after what was handed
        before; waits only while `MAX_QUEUED_SENDS` are queued (memory stays bounded)."""
        if self.error is not None:
            raise self.error
        if not self._packers and not self._unplaced:
            return
        packers, self._packers = self._packers, {}
        unplaced, self._unplaced = self._unplaced, []
        self._queued += 1
        self._sending = asyncio.ensure_future(self._send_after(self._sending, packers, unplaced))
        if self._queued > MAX_QUEUED_SENDS:
            await self.drain()

    async def drain(self) -> None:
        """Until everything handed over is with the producer (Faust's flush then awaits delivery)."""
        if self._sending is not None:
            await asyncio.shield(self._sending)
        if self.error is not None:
            raise self.error

    async def delivered(self) -> None:
        """Until the cluster acknowledged everything handed over."""
        await self.drain()
        await self.producer.flush()

    async def send(self) -> None:
        """Hand everything added so far to the producer and wait until it has it."""
        await self.send_soon()
        await self.drain()

    async def _send_after(
        self,
        previous: asyncio.Task[None] | None,
        packers: dict[tuple[str, int], BatchPacker],
        unplaced: list[tuple[str, bytes, bytes]],
    ) -> None:
        try:
            if previous is not None:
                await previous
            if self.error is None:
                await self._send(packers, unplaced)
        except Exception as error:
            self.error = self.error or error
            log.error("handing output records to the producer failed: %r", error)
        finally:
            self._queued -= 1

    async def _send(
        self, packers: dict[tuple[str, int], BatchPacker], unplaced: list[tuple[str, bytes, bytes]]
    ) -> None:
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
