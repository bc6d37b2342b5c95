"""What the read API and the metrics read of a worker's local state: Protocols the worker's `Pipeline`
satisfies, so that neither imports the worker (streams/app.py wires the three together)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from streams.aggregate import DayCalendar, Window


class PartitionView(Protocol):
    """A raw partition's progress on this worker (`worker.PartitionState`)."""

    @property
    def stream_time(self) -> int: ...

    @property
    def last_offset(self) -> int: ...

    @property
    def last_event_at(self) -> float: ...


class ChangeFeed(Protocol):
    """This worker's change tokens (`worker.Changes`)."""

    async def after(self, token: str, wait_s: float) -> str: ...


class LocalState(Protocol):
    """A worker's partitions and windows as the read API and the metrics read them (`worker.Pipeline`)."""

    @property
    def raw_topic_name(self) -> str: ...

    @property
    def calendar(self) -> DayCalendar: ...

    @property
    def partitions(self) -> Mapping[int, PartitionView]: ...

    @property
    def changes(self) -> ChangeFeed: ...

    @property
    def last_crash(self) -> str | None: ...

    def local_partitions(self) -> list[int]: ...

    def local_windows(
        self, resolution: str, starts: Sequence[int], user: str | None = None, notebook: str | None = None
    ) -> dict[int, Window]: ...

    def stored_stream_time(self, partition: int) -> int | None: ...

    def held_from(self, stream_time: int) -> dict[str, int]: ...

    def lag(self, partition: int) -> int | None: ...
