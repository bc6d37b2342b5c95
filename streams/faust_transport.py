"""The worker's Faust transport: a producer with acks=all and idempotence, like the collector's, and a
consumer that never commits past a record the agent did not process and whose fetches the broker
holds only briefly.

Faust's aiokafka producer asks for idempotence only inside transactions (exactly_once); the worker runs
at_least_once, so without this a broker failing over between a send and its acknowledgement could make
aiokafka's retry write an events-topic record (or a changelog update) twice. Idempotence lets the broker
drop such a retry; acks=all (with min.insync.replicas 2 on a 3-broker cluster) means an acknowledged
record survives losing the partition's leader.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from mode import Service
from mode.utils.queues import FlowControlEvent

ACKS_ALL = -1  # Faust's `producer_acks` is Kafka's numeric form; -1 is "all"
FETCH_MAX_WAIT_MS = 100  # how long the broker may hold a fetch for partitions with nothing new


class IdempotentProducer(faust_aiokafka.Producer):
    """Faust's aiokafka producer with enable_idempotence and acks=all outside transactions too, and a
    hook run at the start of every flush: Faust flushes right before it commits offsets, so what the
    hook writes (the worker's cached table values) is on Kafka before the offsets that cover it."""

    before_flush: Callable[[], Awaitable[object]] | None = None

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}

    async def flush(self) -> None:
        if self.before_flush is not None:
            await self.before_flush()
        await super().flush()


class ReadOffsets(defaultdict[TP, int | None]):
    """Faust's read offsets (`Consumer._read_offset`, the last offset its fetch loop handed on per
    partition), below which that loop drops a fetched record. A seek sets it back; records fetched before
    the seek and handed on after it would raise it again, and the records fetched again would all be
    dropped (seen: a restarted worker waited 10 s for a partition read again). While a partition is read
    again (`ContiguousConsumer.reread`), its read offset is therefore no higher than where that started."""

    def __init__(self) -> None:
        super().__init__(lambda: None)
        self.floors: dict[TP, int] = {}

    def __getitem__(self, tp: TP) -> int | None:
        offset, floor = super().__getitem__(tp), self.floors.get(tp)
        return offset if offset is None or floor is None else min(offset, floor)


class PromptFetchThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread, with fetches the broker holds for `FETCH_MAX_WAIT_MS`, not Faust's 1.5 s.

    aiokafka has one fetch in flight per broker, and leaves out the partitions whose fetched records
    the agent is still working through. In a catch-up where some partitions are already read to their
    end, the fetch for those alone waits the whole time on the broker, and the partition with the
    backlog cannot be fetched again until it returns: every catch-up stood still for 0.5-0.8 s, and
    throughput came out 15 % lower. Records that arrive still end a held fetch at once, so a shorter
    wait costs an idle worker up to ten small requests a second, nothing more."""

    def _create_worker_consumer(self, transport: faust_aiokafka.Transport) -> AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when it starts (its Fetcher)
        return consumer


class ContiguousConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, committing an offset only once every record before it was acked.

    Faust (faust-streaming 0.11) lets a commit pass one unacked record, the one right at the committed
    offset (`min(acked) - committed > 1`), and counts any jump in the fetched offsets as acked
    (`_add_gap`, meant for compacted or transactional topics). Faust itself can drop a fetched record
    before the agent sees it (its queues are cleared when the flow resumes after a rebalance): such a
    record was then committed unprocessed, and its events were lost. The raw topic is neither compacted
    nor transactional, so its offsets have no gaps to fill."""

    _read_offset: ReadOffsets

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_offset = ReadOffsets()

    @Service.task
    async def _commit_handler(self) -> None:
        """Faust's, with the first commit one interval after the start: Faust sleeps an interval before
        its timer, which sleeps another, so a worker killed in its first two seconds had committed
        nothing of what it counted."""
        async for _ in self.itertimer(self.commit_interval, name="commit"):
            await self.commit()

    def _new_consumer_thread(self) -> PromptFetchThread:
        return PromptFetchThread(self, loop=self.loop, beacon=self.beacon)

    def _new_offset(self, tp: TP) -> int | None:
        acked, committed = self._acked[tp], self._committed_offset[tp]
        if acked and committed is not None and min(acked) > committed:
            return None  # the record at the committed offset is not acked yet
        return super()._new_offset(tp)

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """No gaps: see the class."""

    async def seek_to_committed(self) -> Mapping[TP, int | None]:
        """Seek every assigned partition to its committed offset, asking for them all at once.

        aiokafka's `seek_to_committed` asks the group coordinator for one partition after the other: with
        the raw topic, four changelogs and the assignor's topic, a start (and every rebalance) waited
        for about 40 round trips before it read anything."""
        return await self._thread.call_thread(self._seek_to_committed_at_once)

    async def _seek_to_committed_at_once(self) -> dict[TP, int | None]:
        consumer = self._thread._ensure_consumer()
        partitions = list(consumer.assignment())
        offsets = await asyncio.gather(*(consumer.committed(tp) for tp in partitions))
        for tp, offset in zip(partitions, offsets, strict=True):
            if offset:  # as aiokafka's: None (nothing committed) and 0 leave the position alone
                consumer.seek(tp, offset)
        return dict(zip(partitions, offsets, strict=True))

    def committed_offset(self, tp: TP) -> int | None:
        """The offset the group resumes `tp` from (None before the first commit or seek)."""
        return self._committed_offset.get(tp)

    async def reread(self, tp: TP, offset: int) -> None:
        """Fetch `tp` again from `offset`, on the consumer's thread as Faust's own seeks run; until
        `reread_arrived`, Faust hands on every record from `offset` (`ReadOffsets`)."""
        self._read_offset.floors[tp] = offset
        await self._thread.seek_wait({tp: offset})

    def reread_arrived(self, tp: TP) -> None:
        """The record `reread` asked for reached the agent (or the partition is no longer ours)."""
        self._read_offset.floors.pop(tp, None)


class IdempotentTransport(faust_aiokafka.Transport):
    Producer = IdempotentProducer
    Consumer = ContiguousConsumer


def use_worker_transport(app: faust.App) -> None:
    """Make every producer `app` creates an `IdempotentProducer`, its consumer a `ContiguousConsumer`."""
    app.transport = IdempotentTransport(app.conf.broker_consumer, app)
    app.producer_transport = IdempotentTransport(app.conf.broker_producer, app)


def before_every_flush(app: faust.App, hook: Callable[[], Awaitable[object]]) -> None:
    """Run `hook` first whenever `app`'s producer flushes (before each commit, at a rebalance, at stop)."""
    producer = app.producer
    if not isinstance(producer, IdempotentProducer):
        raise TypeError("use_worker_transport(app) first")
    producer.before_flush = hook


class ClearOnlySuspended(FlowControlEvent):
    """Faust's flow control, but a resume empties the stream queues only if the flow was suspended.

    Faust clears them on every resume, to drop what was fetched before a rebalance. At a start with state
    to restore it resumes twice: before it reads the changelogs, and again after it resumed the raw
    partitions and sought them to their committed offsets. Records handed to the agent's queue between
    the two, the committed record of each partition first, were then dropped (seen in about one restart
    in six: every partition re-read, the catch-up 11-15 s instead of 7-9 s)."""

    def resume(self) -> None:
        suspended = self._suspend.is_set()
        self._suspend.clear()
        self._resume.set()
        if suspended:
            self.clear()


def clear_only_suspended(app: faust.App) -> None:
    """Before any stream or table queue exists: they register with the flow control they are made with."""
    app.flow_control = ClearOnlySuspended(loop=app.loop)
