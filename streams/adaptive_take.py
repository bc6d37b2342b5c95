"""Adaptive batching for the agent: Faust's `Stream.take_events` with a wait that follows the load.

`take_events(max_, within)` waits a fixed `within` for up to `max_` records. A short wait counts a quiet
stream sooner but makes a busy one run many small batches (each costs the agent's fixed work and an ack
per record); a long wait does the reverse. Here the next batch waits for the stream's backlog: after a
batch that filled up, for a full one; after one that left `backlog(batch)` records in Kafka (at least
`BACKLOG_RECORDS`), for those. It waits at most `busy_s`, and no longer than records keep coming:
`QUIET_S` without one ends the wait (the end of a backlog). Without a backlog the next batch is what has
already reached the stream: it is taken as soon as a record arrives and the stream's queue is empty, with
no fixed wait. Records that come while a batch is processed queue up and form the next batch, so batches
grow with the load by themselves.

The backlog matters at a start: records then reach the stream a few at a time, and a restarted worker
counted the first second of its backlog in batches of two records, a quarter slower than in full ones.

A batch is full at `max_records` records or `max_bytes` of record values, whichever comes first: the
work is in the lines, and a record holds one line (Fluent Bit) or up to a hundred (our collector). The
agent holds the event loop for a whole batch, so the byte bound is what keeps the read API and the
offset commits from waiting long behind a busy agent.

The rest is Faust's code (faust-streaming 0.15, `faust/streams.py`, BSD licence), with its acking:
events are acked after the agent has processed their batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any

import faust
from faust.types import EventT
from mode.utils.aiter import aiter
from mode.utils.futures import notify

QUIET_S = 0.02  # a batch waiting for a backlog takes what it has once this long passes without a record
BACKLOG_RECORDS = 32  # smaller ones are what a live stream leaves between batches: waiting adds latency


async def take_adaptive(  # noqa: PLR0915 (Faust's take_events, kept whole)
    stream: faust.StreamT[Any],
    max_records: int,
    max_bytes: int,
    busy_s: float,
    backlog: Callable[[Sequence[EventT]], int],
) -> AsyncGenerator[Sequence[EventT], None]:
    s: Any = stream  # Faust's Stream internals, as its own take_events uses them
    buffer: list[Any] = []
    buffered_bytes = 0
    events: list[EventT] = []
    buffer_full = asyncio.Event()
    buffer_enough = asyncio.Event()  # it holds `awaited` records, or is full
    buffer_started = asyncio.Event()
    buffer_consumed = asyncio.Event()
    buffer_consuming: asyncio.Future[None] | None = None
    awaited = 0  # records the next batch waits for (0: none, take what has come)
    stream_enable_acks: bool = s.enable_acks
    channel_it = aiter(s.channel)

    async def add_to_buffer(value: Any) -> Any:
        nonlocal buffer_consuming, buffered_bytes
        try:
            if buffer_consuming is not None:
                try:
                    await buffer_consuming
                finally:
                    buffer_consuming = None
            buffer.append(value)
            buffered_bytes += len(value) if isinstance(value, bytes) else 0
            buffer_started.set()
            event = s.current_event
            if event is None:
                raise RuntimeError("Take buffer found current_event is None")
            events.append(event)
            if awaited and len(buffer) >= awaited:
                buffer_enough.set()
            if len(buffer) >= max_records or buffered_bytes >= max_bytes:
                buffer_full.set()
                buffer_enough.set()
                buffer_consumed.clear()
                await s.wait(buffer_consumed)
        except asyncio.CancelledError:  # pragma: no cover
            raise
        except Exception as exc:
            s.log.exception("Error adding to take buffer: %r", exc)
            await s.crash(exc)
        return value

    s.enable_acks = False  # acked here, once the agent processed the batch
    s.add_processor(add_to_buffer)
    s._enable_passive(channel_it)
    try:
        while not s.should_stop:
            if awaited:
                deadline, seen = s.loop.time() + busy_s, -1
                while not buffer_enough.is_set() and seen < len(buffer) and s.loop.time() < deadline:
                    seen = len(buffer)
                    await s.wait_for_stopped(buffer_enough, timeout=min(QUIET_S, deadline - s.loop.time()))
                if not buffer:  # nothing came: the backlog is over
                    awaited = 0
                    continue
            else:
                await s.wait_for_stopped(buffer_started)
                # the stream moves one queued record per loop turn; no event tells when its queue is empty
                while not (buffer_full.is_set() or s.channel.empty() or s.should_stop):  # noqa: ASYNC110
                    await asyncio.sleep(0)
            if not buffer:
                continue
            buffer_consuming = s.loop.create_future()
            full = buffer_full.is_set()
            try:
                yield list(events)
                waiting = max_records if full else min(backlog(events), max_records)
                awaited = waiting if waiting >= BACKLOG_RECORDS else 0
            finally:
                buffer.clear()
                buffered_bytes = 0
                for event in events:
                    await s.ack(event)
                events.clear()
                notify(buffer_consuming)
                buffer_full.clear()
                buffer_enough.clear()
                buffer_started.clear()
                buffer_consumed.set()
    finally:
        s.enable_acks = stream_enable_acks
        s._processors.remove(add_to_buffer)
