"""How one partition's batch is cut before it is counted, and what a commit may cover (no broker)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

from aiokafka import AIOKafkaProducer
from faust.types import TP
from intervaltree import IntervalTree
from mode.utils.queues import FlowControlQueue

from pioneer_base.config import KafkaSettings
from streams.app import create_app
from streams.faust_transport import (
    FETCH_MAX_WAIT_MS,
    ClearOnlySuspended,
    ContiguousConsumer,
    PromptFetchThread,
    ReadOffsets,
)
from streams.outbox import HOLDS_MUCH_BYTES, Outbox
from streams.topics import TopicSettings
from streams.worker import WorkerSettings, offset_runs, until_missing


def batch(*offsets: int, size: int = 100) -> list[SimpleNamespace]:
    return [SimpleNamespace(message=SimpleNamespace(offset=offset), value=b"x" * size) for offset in offsets]


def offsets_of(runs: list[list[SimpleNamespace]]) -> list[list[int]]:
    return [[event.message.offset for event in run] for run in runs]


def test_a_batch_in_offset_order_is_one_run() -> None:
    assert offsets_of(offset_runs(batch(4, 5, 6, 9))) == [[4, 5, 6, 9]]


def test_a_batch_that_goes_back_after_a_rebalance_seek_is_cut_where_it_repeats() -> None:
    # records 10..13 fetched, then the consumer seeks to the committed offset 11 and delivers again
    assert offsets_of(offset_runs(batch(10, 11, 12, 13, 11, 12, 13, 14))) == [
        [10, 11, 12, 13],
        [11, 12, 13, 14],
    ]


def test_a_repeated_offset_starts_a_new_run() -> None:
    assert offsets_of(offset_runs(batch(7, 7, 8))) == [[7], [7, 8]]


def test_a_long_run_is_cut_every_max_bytes() -> None:
    """The agent lets the event loop run between runs: a commit waits for a run, not a partition."""
    assert offsets_of(offset_runs(batch(1, 2, 3, 4, 5, size=400), max_bytes=1000)) == [[1, 2, 3], [4, 5]]


def test_an_empty_batch_has_no_runs() -> None:
    assert offset_runs([]) == []


def kept(events: list[SimpleNamespace]) -> list[int]:
    return [event.message.offset for event in events]


def test_records_in_order_are_all_counted_and_the_next_is_the_one_after() -> None:
    events, expected, missing = until_missing(batch(5, 6, 7), 5)
    assert (kept(events), expected, missing) == ([5, 6, 7], 8, False)


def test_the_records_after_a_missing_one_wait_for_it() -> None:
    # 307 was dropped between fetch and agent: 308 and later must not be counted before it
    events, expected, missing = until_missing(batch(305, 306, 308, 309), 305)
    assert (kept(events), expected, missing) == ([305, 306], 307, True)


def test_a_record_missing_right_at_the_committed_offset_is_found() -> None:
    events, expected, missing = until_missing(batch(12, 13), 11)
    assert (kept(events), expected, missing) == ([], 11, True)


def test_a_replay_after_a_seek_passes_and_does_not_move_the_next_offset_back() -> None:
    events, expected, missing = until_missing(batch(10, 11, 12, 13, 11, 12, 13, 14), 10)
    assert (kept(events), expected, missing) == ([10, 11, 12, 13, 11, 12, 13, 14], 15, False)


def test_without_a_known_start_the_first_record_starts_the_run() -> None:
    events, expected, missing = until_missing(batch(40, 41, 43), None)
    assert (kept(events), expected, missing) == ([40, 41], 42, True)


def consumer_with(committed: int | None, acked: list[int]) -> ContiguousConsumer:
    """Just the bookkeeping Faust's `_new_offset` reads (no broker, no app)."""
    tp = TP("raw", 0)
    consumer = object.__new__(ContiguousConsumer)
    consumer._acked = defaultdict(list, {tp: sorted(acked)})
    consumer._acked_index = defaultdict(set, {tp: set(acked)})
    consumer._committed_offset = defaultdict(lambda: None, {tp: committed})
    consumer._gap = defaultdict(IntervalTree)
    return consumer


def test_a_commit_never_passes_the_record_at_the_committed_offset() -> None:
    # Faust alone would commit 311 here: it lets the record at the committed offset (307) go unacked
    assert consumer_with(307, [308, 309, 310])._new_offset(TP("raw", 0)) is None


def test_a_commit_covers_every_record_acked_in_a_row_from_the_committed_offset() -> None:
    assert consumer_with(307, [307, 308, 309, 311])._new_offset(TP("raw", 0)) == 310


def test_a_jump_in_the_fetched_offsets_is_not_counted_as_acked() -> None:
    consumer = consumer_with(100, [100])
    asyncio.run(consumer._add_gap(TP("raw", 0), 101, 120))
    assert not consumer._gap[TP("raw", 0)]


def test_while_a_partition_is_read_again_records_from_where_it_started_are_handed_on() -> None:
    """Faust's fetch loop drops a record below the read offset; records fetched before the seek and
    handed on after it must not raise the read offset over the ones fetched again."""
    offsets, tp, other = ReadOffsets(), TP("raw", 0), TP("raw", 1)
    assert offsets[tp] is None  # nothing handed on yet: Faust's loop passes anything
    offsets[tp], offsets[other] = 150, 150
    offsets.floors[tp] = 79  # reread from 79
    offsets[tp] = 79  # Faust's seek sets it back...
    offsets[tp] = 200  # ...and a record fetched before the seek is handed on after it
    assert (offsets[tp], offsets[other]) == (
        79,
        150,
    )  # 79.. fetched again pass; other partitions as Faust keeps them
    del offsets.floors[tp]  # arrived
    assert offsets[tp] == 200


def test_a_resume_while_the_flow_runs_keeps_the_queued_records() -> None:
    """Faust resumes the flow twice at a start with state to restore; the second resume, with the flow
    already running, must not drop the committed records already queued for the agent."""

    async def run() -> tuple[int, int, int]:
        flow = ClearOnlySuspended(loop=asyncio.get_running_loop())  # suspended, as Faust's starts
        queue: FlowControlQueue[int] = FlowControlQueue(flow_control=flow, clear_on_resume=True)
        queue.put_nowait(1)  # fetched before a rebalance
        flow.resume()  # a suspended flow resumed: stale records go, as in Faust
        after_first = queue.qsize()
        queue.put_nowait(2)  # the committed record, fetched after the seek
        flow.resume()  # the start's second resume
        after_second = queue.qsize()
        flow.suspend()
        flow.resume()
        return after_first, after_second, queue.qsize()

    assert asyncio.run(run()) == (0, 1, 0)


def test_the_outbox_holds_much_at_megabytes_not_at_partitions() -> None:
    """A record in each of eight partitions is no reason to stop the agent and wait for the producer."""

    async def check() -> None:
        producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9", max_batch_size=1024 * 1024)
        faust_producer = SimpleNamespace(  # what the outbox uses of Faust's: placement, aiokafka's producer
            key_partition=lambda topic, key: SimpleNamespace(partition=key[0] % 8),
            _ensure_producer=lambda: producer,
        )
        outbox = Outbox(SimpleNamespace(producer=faust_producer))
        for partition in range(8):
            outbox.add("aggregates", bytes([partition]), b"x" * 100)
        assert not outbox.holds_much
        value = b"y" * 100_000
        for n in range(HOLDS_MUCH_BYTES // len(value) + 1):
            outbox.add("events", bytes([n % 8]), value)
        assert outbox.holds_much
        await producer.stop()

    asyncio.run(check())


def test_the_worker_consumer_lets_the_broker_hold_a_fetch_only_briefly(tmp_path: Path) -> None:
    """Faust asks for 1.5 s; a catch-up then stood still while a fetch for partitions read to their end
    waited on the broker (`PromptFetchThread`)."""
    app = create_app(
        WorkerSettings(data_dir=tmp_path),
        KafkaSettings(bootstrap_servers="127.0.0.1:1"),
        TopicSettings(replication_factor=1),  # explicit: create_app asks no cluster
    )
    thread = app.consumer._thread
    assert isinstance(thread, PromptFetchThread)

    async def made() -> int:  # the aiokafka consumer Faust makes (nothing connects yet)
        return thread._create_consumer(asyncio.get_running_loop())._fetch_max_wait_ms

    assert asyncio.run(made()) == FETCH_MAX_WAIT_MS < 1500
