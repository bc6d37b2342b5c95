"""Container-runtime framing of pod log files: CRI, docker json-file, and plain lines.

Runtimes split lines longer than 16 KiB into partial chunks; `Reassembler` joins them again per stream.
It never holds more than `max_line_bytes + 1` bytes per stream: a longer line comes out cut to that size,
which is how the parser recognises it as too long. The collector tails files itself and reuses
`Deframer` (physical lines) or `Reassembler` (already unwrapped chunks); only `read_lines` reads.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import BinaryIO, NamedTuple

import orjson

_CRI_LINE = re.compile(rb"\d{4}-\d\d-\d\dT\S+ (?:stdout|stderr) [PF] ")
# The start of a whole (F) CRI line: groups time, stream; the content runs to the next newline. What
# `Deframer` makes of such a line when no partial line is pending, for readers that take the common case
# with one short match and one `find` per line (a regex scanning the content for its end is slower).
CRI_FULL_LINE_START = re.compile(rb"([^ \n]+) (stdout|stderr) F ")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


class Framing(StrEnum):
    CRI = "cri"  # containerd, CRI-O: `<RFC3339Nano> <stdout|stderr> <P|F> <content>`
    DOCKER = "docker"  # json-file: `{"log":"<content>\n","stream":"stderr","time":"<RFC3339Nano>"}`
    PLAIN = "plain"  # the application's own output


class LogLine(NamedTuple):
    """One logical line, without its newline (a tuple: one is made per line, so it must be cheap)."""

    content: bytes
    offset: int  # byte offset of its first chunk in the source
    stream: str | None = None  # stdout/stderr, when the runtime said
    time: str | None = None  # the runtime's RFC 3339 time of its first chunk


def detect_framing(first_line: bytes) -> Framing:
    """The framing of a file, judged from its first non-empty line."""
    if first_line.startswith(b'{"log":'):
        return Framing.DOCKER
    if _CRI_LINE.match(first_line):
        return Framing.CRI
    return Framing.PLAIN


def rfc3339_to_ms(text: str) -> int | None:
    """Epoch ms of a runtime timestamp such as `2026-11-26T18:15:14.27234178Z`; None if unparsable."""
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return (stamp - _EPOCH) // _MILLISECOND


@dataclass(slots=True)
class _Partial:
    offset: int
    time: str | None
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0

    def add(self, content: bytes, limit: int) -> None:
        room = limit - self.size
        if room > 0:
            self.chunks.append(content[:room])
            self.size += min(room, len(content))


class Reassembler:
    """Joins partial chunks into logical lines, per stream, with at most `max_line_bytes + 1` bytes held
    per stream; fed one chunk at a time, so it works on any chunk source."""

    def __init__(self, max_line_bytes: int) -> None:
        self._limit = max_line_bytes + 1
        self._pending: dict[str, _Partial] = {}

    def feed(
        self, stream: str, content: bytes, *, partial: bool, offset: int, time: str | None = None
    ) -> LogLine | None:
        """Add one chunk; returns the logical line it completes, if any."""
        pending = self._pending.get(stream)
        if pending is None:
            if not partial:
                return LogLine(content[: self._limit], offset, stream, time)
            pending = self._pending[stream] = _Partial(offset, time)
        pending.add(content, self._limit)
        if partial:
            return None
        del self._pending[stream]
        return LogLine(b"".join(pending.chunks), pending.offset, stream, pending.time)

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def pending_offset(self) -> int | None:
        """Where the oldest line still waiting for chunks starts; a reader's checkpoint must not pass it."""
        return min((p.offset for p in self._pending.values()), default=None)

    def flush(self) -> list[LogLine]:
        """Lines still waiting for their last chunk (the writer died, or the file rotated), as they are."""
        lines = [LogLine(b"".join(p.chunks), p.offset, s, p.time) for s, p in self._pending.items()]
        self._pending.clear()
        return sorted(lines, key=lambda line: line.offset)


_CRI_STREAMS = {b"stdout": "stdout", b"stderr": "stderr"}
_CRI_PARTIAL = {b"P": True, b"F": False}


def _unwrap_cri(raw: bytes) -> tuple[str, str, bool, bytes] | None:
    parts = raw.split(b" ", 3)
    if len(parts) != 4:
        return None
    stream, partial = _CRI_STREAMS.get(parts[1]), _CRI_PARTIAL.get(parts[2])
    if stream is None or partial is None:
        return None
    content = parts[3]
    return (
        stream,
        parts[0].decode("ascii", "replace"),
        partial,
        content[:-1] if content.endswith(b"\n") else content,
    )


def _unwrap_docker(raw: bytes) -> tuple[str, str | None, bool, bytes] | None:
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("log"), str):
        return None
    log: str = record["log"]
    stream, time = record.get("stream"), record.get("time")
    partial = not log.endswith("\n")
    content = log.encode("utf-8", "surrogatepass")
    return (
        stream if isinstance(stream, str) else "stdout",
        time if isinstance(time, str) else None,
        partial,
        content if partial else content[:-1],
    )


class Deframer:
    """Turns the physical lines of one source into logical lines: unwraps the runtime's framing and
    reassembles partial lines. A line that does not fit the framing is passed on as it is."""

    def __init__(self, framing: Framing, max_line_bytes: int) -> None:
        self.framing = framing
        self._limit = max_line_bytes + 1
        self._reassembler = Reassembler(max_line_bytes)

    def feed(self, raw: bytes, offset: int) -> LogLine | None:
        """Add one physical line (its newline optional) found at `offset`."""
        unwrapped = None
        if self.framing is Framing.CRI:
            unwrapped = _unwrap_cri(raw)
        elif self.framing is Framing.DOCKER:
            unwrapped = _unwrap_docker(raw)
        if unwrapped is None:
            return LogLine((raw[:-1] if raw.endswith(b"\n") else raw)[: self._limit], offset)
        stream, time, partial, content = unwrapped
        return self._reassembler.feed(stream, content, partial=partial, offset=offset, time=time)

    def pending_offset(self) -> int | None:
        return self._reassembler.pending_offset()

    def takes_full_cri_lines(self) -> bool:
        """Whether a whole CRI line may bypass `feed` (see `CRI_FULL_LINE_START`): nothing to reassemble."""
        return self.framing is Framing.CRI and not self._reassembler.pending

    def flush(self) -> list[LogLine]:
        return self._reassembler.flush()


def read_lines(binary: BinaryIO, max_line_bytes: int) -> Iterator[LogLine]:
    """Every logical line of a binary stream, its framing detected from the first non-empty line.

    Reads at most `max_line_bytes + 1` bytes of any physical line: a longer one comes out cut to that,
    not unwrapped, so the parser dead-letters it; the rest of it is skipped.
    """
    limit = max_line_bytes + 1
    readline = binary.readline
    deframer: Deframer | None = None
    plain = False
    offset = 0
    while raw := readline(limit):
        length = len(raw)
        line: LogLine | None
        if length == limit and not raw.endswith(b"\n"):
            while rest := readline(limit):
                length += len(rest)
                if rest.endswith(b"\n"):
                    break
            line = LogLine(raw, offset)
        elif plain:  # the common case, without a call
            line = LogLine(raw[:-1] if raw.endswith(b"\n") else raw, offset)
        elif deframer is not None:
            line = deframer.feed(raw, offset)
        elif raw.strip():
            deframer = Deframer(detect_framing(raw), max_line_bytes)
            plain = deframer.framing is Framing.PLAIN
            line = deframer.feed(raw, offset)
        else:
            line = None
        offset += length
        if line is not None:
            yield line
    if deframer is not None:
        yield from deframer.flush()
