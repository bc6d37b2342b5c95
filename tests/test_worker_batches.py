"""How one partition's batch is cut before it is counted (no broker)."""

from __future__ import annotations

from types import SimpleNamespace

from streams.worker import offset_runs


def batch(*offsets: int) -> list[SimpleNamespace]:
    return [SimpleNamespace(message=SimpleNamespace(offset=offset)) for offset in offsets]


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


def test_an_empty_batch_has_no_runs() -> None:
    assert offset_runs([]) == []
