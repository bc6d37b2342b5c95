"""What every source hands to the Kafka sink: one logical pod log line and where it came from."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

from streams.framing import CRI_FULL_LINE_START, Deframer, detect_framing
from streams.identity import PodMeta

_STREAMS = {b"stdout": "stdout", b"stderr": "stderr"}


@dataclass(slots=True)
class LogLine:
    """One logical line (partials already reassembled), in the shape of Fluent Bit's kafka output.

    `kubernetes` holds `pod_name`, `namespace_name`, `container_name`, `labels`, `annotations` as Fluent
    Bit's kubernetes filter writes them; `source_id` + `offset` name the line's position in its source
    (file + byte offset of its first chunk), so downstream can recognise a line delivered twice.
    """

    log: str
    stream: str
    time: str
    kubernetes: dict[str, Any]
    source_id: str
    offset: int
    extra: dict[str, Any] = field(default_factory=dict)


class LineSink(Protocol):
    """Where sources deliver lines.

    `submit` waits while the sink's bounded buffer is full (backpressure: the source stops reading,
    nothing is dropped), then returns a future that completes once Kafka acknowledged every line of the
    call (lines the sink filters out count as done). Sources checkpoint or acknowledge only after it.
    """

    async def submit(self, lines: Sequence[LogLine]) -> asyncio.Future[None]: ...


def kubernetes_metadata(meta: PodMeta) -> dict[str, Any]:
    """A PodMeta in the shape of Fluent Bit's kubernetes filter, which the envelope carries."""
    return {
        "pod_name": meta.pod,
        "namespace_name": meta.namespace,
        "container_name": meta.container,
        "labels": dict(meta.labels),
        "annotations": dict(meta.annotations),
    }


@lru_cache(maxsize=8)
def _utc_second(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def rfc3339_nano(ns: int) -> str:
    """Go's RFC3339Nano, as container runtimes write it: UTC, trailing zeros of the fraction dropped."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    digits = f"{fraction:09d}".rstrip("0")
    stamp = _utc_second(seconds)
    return f"{stamp}.{digits}Z" if digits else f"{stamp}Z"


def now_rfc3339() -> str:
    return rfc3339_nano(time.time_ns())


class LineAssembler:
    """Turns the bytes of one source, as they arrive, into logical lines with their byte offsets.

    Splits physical lines, unwraps the container runtime's framing (detected from the first non-empty
    line) and reassembles partial lines. Memory is bounded: a physical line longer than
    `max_line_bytes` is passed on cut (the parser dead-letters it) and the rest of it is skipped.
    """

    def __init__(
        self, source_id: str, kubernetes: dict[str, Any], max_line_bytes: int, offset: int = 0
    ) -> None:
        self.source_id = source_id
        self.kubernetes = kubernetes
        self.max_line_bytes = max_line_bytes
        self.reset(offset)

    def reset(self, offset: int) -> None:
        self.offset = offset  # bytes of the source consumed so far
        self._buffer = bytearray()  # an incomplete physical line, starting at offset - len(_buffer)
        self._skipping_long_line = False
        self._deframer: Deframer | None = None

    def feed(self, data: bytes) -> list[LogLine]:
        if not data:
            return []
        start = self.offset - len(self._buffer)
        self.offset += len(data)
        buffer = self._buffer
        buffer += data
        lines: list[LogLine] = []
        position = 0
        while True:
            deframer = self._deframer
            if deframer is not None and not self._skipping_long_line and deframer.takes_full_cri_lines():
                position = self._take_full_cri_lines(buffer, position, start, lines)
            newline = buffer.find(b"\n", position)
            if newline < 0:
                break
            if self._skipping_long_line:
                self._skipping_long_line = False
            else:
                self._deframe(bytes(buffer[position : newline + 1]), start + position, lines)
            position = newline + 1
        del buffer[:position]
        limit = self.max_line_bytes + 1
        if len(buffer) > limit and not self._skipping_long_line:
            self._emit(bytes(buffer[:limit]), start + position, None, None, lines)
            self._skipping_long_line = True
        if self._skipping_long_line:
            buffer.clear()
        return lines

    def finish(self) -> list[LogLine]:
        """At the end of a source: its last line without a newline, and partial lines never completed."""
        lines: list[LogLine] = []
        if self._buffer and not self._skipping_long_line:
            self._deframe(bytes(self._buffer), self.offset - len(self._buffer), lines)
        self._buffer.clear()
        if self._deframer is not None:
            for line in self._deframer.flush():
                self._emit(line.content, line.offset, line.stream, line.time, lines)
        return lines

    def unfinished_offset(self) -> int:
        """Where the first line not yet handed out starts: resuming there loses and repeats nothing."""
        unfinished = self.offset - len(self._buffer)  # empty while skipping the rest of a long line
        pending = self._deframer.pending_offset() if self._deframer is not None else None
        return unfinished if pending is None else min(unfinished, pending)

    def _take_full_cri_lines(self, buffer: bytearray, position: int, start: int, lines: list[LogLine]) -> int:
        """The common case, one short match and one `find` per line: whole CRI lines while nothing is
        pending. Stops at the first line that needs `Deframer` (partial, odd, too long) and returns where
        it stopped."""
        match_at, find, limit = CRI_FULL_LINE_START.match, buffer.find, self.max_line_bytes
        append, kubernetes, source_id = lines.append, self.kubernetes, self.source_id
        while (match := match_at(buffer, position)) is not None:
            content_start = match.end()
            newline = find(b"\n", content_start)
            if newline < 0 or newline - content_start > limit:
                break
            time, stream = match.groups()
            append(LogLine(
                log=buffer[content_start:newline].decode("utf-8", "replace"),
                stream=_STREAMS[stream],
                time=time.decode("ascii", "replace"),
                kubernetes=kubernetes,
                source_id=source_id,
                offset=start + position,
            ))  # fmt: skip
            position = newline + 1
        return position

    def _deframe(self, raw: bytes, offset: int, lines: list[LogLine]) -> None:
        if self._deframer is None:
            if not raw.strip():
                return
            self._deframer = Deframer(detect_framing(raw), self.max_line_bytes)
        line = self._deframer.feed(raw, offset)
        if line is not None:
            self._emit(line.content, line.offset, line.stream, line.time, lines)

    def _emit(
        self, content: bytes, offset: int, stream: str | None, when: str | None, lines: list[LogLine]
    ) -> None:
        lines.append(
            LogLine(
                log=content.decode("utf-8", "replace"),
                stream=stream or "stdout",
                time=when or now_rfc3339(),
                kubernetes=self.kubernetes,
                source_id=self.source_id,
                offset=offset,
            )
        )
