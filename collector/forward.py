"""A Fluent forward protocol server: Fluent Bit, Fluentd and fluent-logger clients send log records here.

Implements the Fluentd Forward Protocol Specification v1 over TCP, with one streaming msgpack unpacker
per connection:

- modes Message `[tag, time, record, option?]`, Forward `[tag, [[time, record], ...], option?]`,
  PackedForward `[tag, bin|str, option?]` (concatenated msgpack entries; Fluentd sends them as str) and
  CompressedPackedForward (option `compressed: "gzip"`, one or more concatenated gzip members);
- times as EventTime (ext type 0), integer or float seconds;
- options `chunk` (once the sink has acknowledged every record of the message, the reply is
  `{"ack": chunk}`; a message without `chunk` gets no reply), `compressed` ("gzip" or "text");
  `size` is ignored.

Not implemented: the HELO/PING/PONG handshake (only needed for `shared_key` / user authentication, which
this server does not offer; it never sends HELO, so clients skip it), TLS, Fluentd's UDP heartbeat,
JSON instead of msgpack, zstd, and Fluent Bit's metrics and traces (option `fluent_signal` other than 0).

A malformed or oversized message closes that client's connection, with a warning; others go on. Records
of that message decoded before the fault may already be delivered; it is not acknowledged, so a client
that asked for an ack sends them again.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import reprlib
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import msgpack

from collector.lines import LineSink, LogLine, kubernetes_metadata, rfc3339_nano
from streams.identity import PodMeta

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
"""Largest message, and largest entry of a (decompressed) packed event stream, a client may send. Fluent
Bit's own forward input allows 6 MB; Fluentd's default memory buffer chunk is 8 MB."""

_READ_SIZE = 64 * 1024
# A message of MAX_MESSAGE_BYTES must fit whatever the read boundaries: the unpacker may already hold
# almost one read of a message when the next read arrives.
_UNPACKER_LIMIT = MAX_MESSAGE_BYTES + _READ_SIZE
_SUBMIT_BATCH = 1000  # lines per `submit`, so a huge message meets the sink's backpressure in steps
_NS = 1_000_000_000
_MAX_SECONDS = 2**32  # EventTime's range (uint32 seconds): up to 2106, and never before 1970
_DEFAULT_STREAM = "stderr"  # Python's logging and Jupyter Server write to stderr
_UNKNOWN_POD = PodMeta()

# Fluent Bit's tail input, with `Tag kube.*`, tags /var/log/containers/<pod>_<namespace>_<container>-<id>.log
# as kube.var.log.containers.<pod>_<namespace>_<container>-<id>.log.
_CONTAINER_LOG_TAG = re.compile(
    r"(?:^|\.)var\.log\.containers\.(?P<pod>[^_]+)_(?P<namespace>[^_]+)_(?P<container>.+)-[0-9a-f]{64}\.log$"
)


class _EventTime(int):
    """Nanoseconds since the epoch from an EventTime, kept apart from integer seconds by its type."""


def _ext_hook(code: int, data: bytes) -> object:
    if code == 0 and len(data) == 8:
        seconds, nanoseconds = struct.unpack(">II", data)
        return _EventTime(seconds * _NS + nanoseconds)
    return msgpack.ExtType(code, data)


class _ProtocolError(Exception):
    """The client sent something that is not the forward protocol; its connection is closed."""


class _Decoder:
    """Streaming msgpack for untrusted input: bounded in memory, and any decoding error a protocol error."""

    def __init__(self) -> None:
        # surrogateescape: Fluentd sends packed entries as a str of binary data, which must survive
        # decoding; `_text` turns such escapes into U+FFFD where a string is used as text.
        self._unpacker = msgpack.Unpacker(
            raw=False,
            strict_map_key=False,
            unicode_errors="surrogateescape",
            ext_hook=_ext_hook,
            max_buffer_size=_UNPACKER_LIMIT,
        )
        self._fed = 0

    def decode(self, data: bytes) -> Iterator[Any]:
        """The objects that `data` completes."""
        try:
            self._unpacker.feed(data)
        except msgpack.BufferFull:
            raise _ProtocolError(f"message (or packed entry) larger than {MAX_MESSAGE_BYTES} bytes") from None
        self._fed += len(data)
        try:
            yield from self._unpacker
        except (ValueError, msgpack.UnpackException) as error:
            raise _ProtocolError(f"malformed msgpack: {error!r}") from error

    @property
    def pending(self) -> int:
        """Bytes fed that do not make a whole object yet."""
        return self._fed - self._unpacker.tell()


@dataclass(slots=True)
class ForwardStats:
    """Totals since the server was created (and the connections open now), for Prometheus metrics."""

    connections_accepted: int = 0
    connections_open: int = 0
    records_received: int = 0  # entries decoded, including those skipped
    records_skipped: int = 0  # entries without a textual `log` or `message`
    messages_acked: int = 0
    protocol_errors: int = 0  # connections closed for malformed, oversized or truncated input


@dataclass(slots=True)
class _Connection:
    peer: str
    writer: asyncio.StreamWriter
    offset: int = 0  # entries received so far on this connection
    warned_skip: bool = False


class ForwardServer:
    """Receives forward-protocol messages over TCP and hands their records to a `LineSink` as `LogLine`s.

    A connection's messages are handled in order, so one waiting for its ack holds back the next (Fluent
    Bit and Fluentd wait for the ack before reusing a connection anyway); while the sink applies
    backpressure, the server stops reading, and so does TCP.

    A record's `source_id` is `forward:<peer address>:<tag>` and its `offset` counts the entries of its
    connection from 0: together they identify a record within one connection only, since a client that
    reconnects (or resends an unacknowledged chunk) starts again from another port at offset 0.
    """

    def __init__(self, sink: LineSink, host: str = "127.0.0.1", port: int = 24224) -> None:
        self.sink = sink
        self.host = host
        self.port = port  # the bound port once started (useful with port 0)
        self.stats = ForwardStats()
        self._server: asyncio.Server | None = None
        self._closing = False
        self._handlers: set[asyncio.Task[None]] = set()
        self._idle: set[asyncio.Task[None]] = set()  # handlers waiting for the next bytes

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("forward protocol server listening on %s:%d", self.host, self.port)

    async def close(self, grace_s: float = 10.0) -> None:
        """Stop accepting, give connections `grace_s` to finish (and acknowledge) the messages they have
        already received, then cut what is left. Idle connections close at once."""
        if self._server is None:
            return
        self._closing = True
        self._server.close()
        for task in self._idle:
            task.cancel()
        if self._handlers:
            _, late = await asyncio.wait(self._handlers, timeout=grace_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.stats.connections_accepted += 1
        self.stats.connections_open += 1
        conn = _Connection(_peer_name(writer), writer)
        decoder = _Decoder()
        try:
            while not self._closing:
                self._idle.add(task)
                try:
                    data = await reader.read(_READ_SIZE)
                finally:
                    self._idle.discard(task)
                if not data:
                    if decoder.pending:
                        raise _ProtocolError(f"disconnected {decoder.pending} bytes into a message")
                    break
                for message in decoder.decode(data):
                    await self._receive(conn, message)
        except _ProtocolError as error:
            self.stats.protocol_errors += 1
            log.warning("forward client %s: %s; closing its connection", conn.peer, error)
        except ConnectionError as error:
            log.info("forward client %s: %s", conn.peer, error)
        except Exception:
            log.exception("forward client %s: unexpected error; closing its connection", conn.peer)
        except asyncio.CancelledError:
            # `close` cancels idle and late handlers; end them normally, as Python 3.11's stream machinery
            # logs an error for a handler task that ends cancelled
            if not self._closing:
                raise
        finally:
            self._handlers.discard(task)
            self.stats.connections_open -= 1
            writer.close()

    async def _receive(self, conn: _Connection, message: object) -> None:
        """Submit a message's records in batches; acknowledge it, if asked, once the sink has them all."""
        tag, entries, option = _parse_message(message)
        source_id = f"forward:{conn.peer}:{tag}"
        match = _CONTAINER_LOG_TAG.search(tag)
        tag_pod = PodMeta(match["pod"], match["namespace"], match["container"]) if match else None
        acked: list[asyncio.Future[None]] = []
        batch: list[LogLine] = []
        for entry in entries:
            line = _to_line(entry, tag, tag_pod, source_id, conn.offset)
            conn.offset += 1
            self.stats.records_received += 1
            if line is None:
                self.stats.records_skipped += 1
                if not conn.warned_skip:
                    conn.warned_skip = True
                    log.warning(
                        "forward client %s: skipping records without a `log` or `message` text", conn.peer
                    )
                continue
            batch.append(line)
            if len(batch) >= _SUBMIT_BATCH:
                acked.append(await self.sink.submit(batch))
                batch = []
        if batch:
            acked.append(await self.sink.submit(batch))
        chunk = option.get("chunk")
        if chunk is None:
            return
        # wait, not gather: cancelling this connection must not cancel the sink's futures
        if acked:
            await asyncio.wait(acked)
        for future in acked:
            future.result()  # a failed delivery is not acknowledged: the client sends the chunk again
        conn.writer.write(msgpack.packb({"ack": chunk}, unicode_errors="surrogateescape"))
        await conn.writer.drain()
        self.stats.messages_acked += 1


def _parse_message(message: object) -> tuple[str, Iterable[Any], dict[Any, Any]]:
    """A message's tag, entries (each should be `[time, record]`) and options, whatever its mode."""
    if not (isinstance(message, list) and len(message) >= 2 and isinstance(message[0], str)):
        raise _ProtocolError(f"expected [tag, ...], got {reprlib.repr(message)}")
    tag, second, *rest = message
    entries: Iterable[Any]
    if isinstance(second, list):  # Forward: [tag, [[time, record], ...], option?]
        entries = second
    elif isinstance(second, (bytes, str)):  # (Compressed)PackedForward: [tag, entries packed, option?]
        entries = ()  # decoded below, once the option says how
    elif rest:  # Message: [tag, time, record, option?]
        entries, rest = ([second, rest[0]],), rest[1:]
    else:
        raise _ProtocolError(f"expected [tag, time, record], got {reprlib.repr(message)}")
    if len(rest) > 1:
        raise _ProtocolError(f"message has {len(message)} elements")
    option = rest[0] if rest and rest[0] is not None else {}
    if not isinstance(option, dict):
        raise _ProtocolError(f"option must be a map, got {reprlib.repr(option)}")
    if option.get("fluent_signal", 0) != 0:
        raise _ProtocolError(
            f"only logs are accepted, not Fluent Bit's fluent_signal {option['fluent_signal']!r}"
        )
    if isinstance(second, (bytes, str)):
        entries = _packed_entries(second, option.get("compressed", "text"))
    return _text(tag), entries, option


def _packed_entries(stream: bytes | str, compressed: object) -> Iterator[Any]:
    """The entries of a PackedForward event stream, decoded as they are needed."""
    data = stream.encode("utf-8", "surrogateescape") if isinstance(stream, str) else stream
    if compressed == "gzip":
        pieces = _gunzip(data)
    elif compressed == "text":
        pieces = (data[start : start + _READ_SIZE] for start in range(0, len(data), _READ_SIZE))
    else:
        raise _ProtocolError(f"unsupported compression {compressed!r}")
    decoder = _Decoder()
    for piece in pieces:
        yield from decoder.decode(piece)
    if decoder.pending:
        raise _ProtocolError("packed event stream ends in the middle of an entry")


def _gunzip(data: bytes) -> Iterator[bytes]:
    """Inflate one or more concatenated gzip members piece by piece, so that a small message cannot
    inflate into a huge buffer (each piece is decoded before the next is inflated)."""
    try:
        while data:
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip header and trailer
            pending = data
            while not inflater.eof:
                piece = inflater.decompress(pending, _READ_SIZE)
                pending = inflater.unconsumed_tail
                if not (piece or pending or inflater.eof):
                    raise _ProtocolError("gzip data ends in the middle of a member")
                yield piece
            data = inflater.unused_data
    except zlib.error as error:
        raise _ProtocolError(f"malformed gzip data ({error})") from error


def _to_line(entry: object, tag: str, tag_pod: PodMeta | None, source_id: str, offset: int) -> LogLine | None:
    """The line an `[time, record]` entry carries, or None if its record has no text."""
    if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], dict)):
        raise _ProtocolError(f"expected an entry [time, record], got {reprlib.repr(entry)}")
    when, record = entry
    ns = _event_ns(when)
    text = _record_text(record)
    if text is None:
        return None
    stream = record.get("stream")
    meta = record.get("kubernetes")
    extra: dict[str, Any] = {}
    if isinstance(meta, dict):
        kubernetes = _clean(kubernetes_metadata(PodMeta.from_fluent_bit(meta)))
    elif tag_pod is not None:
        kubernetes = kubernetes_metadata(tag_pod)
    else:
        kubernetes, extra = kubernetes_metadata(_UNKNOWN_POD), {"tag": tag}
    return LogLine(
        log=text,
        stream=_text(stream) if isinstance(stream, str) else _DEFAULT_STREAM,
        time=rfc3339_nano(ns),
        kubernetes=kubernetes,
        source_id=source_id,
        offset=offset,
        extra=extra,
    )


def _record_text(record: dict[Any, Any]) -> str | None:
    """The line in a record: `log` (Fluent Bit) or else `message` (fluent-logger, Fluentd), less its newline."""
    for key in ("log", "message"):
        value = record.get(key)
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace").removesuffix("\n")
        if isinstance(value, str):
            return _text(value).removesuffix("\n")
    return None


def _event_ns(when: object) -> int:
    """Nanoseconds since the epoch of an entry's EventTime, integer or float seconds."""
    if isinstance(when, _EventTime):
        ns = int(when)
    elif isinstance(when, int) and not isinstance(when, bool):
        ns = when * _NS
    elif isinstance(when, float) and math.isfinite(when):
        seconds = math.floor(when)
        ns = seconds * _NS + round((when - seconds) * _NS)
    else:
        raise _ProtocolError(f"event time must be EventTime, integer or float, got {reprlib.repr(when)}")
    if not 0 <= ns < _MAX_SECONDS * _NS:
        raise _ProtocolError(f"event time {when!r} is out of range")
    return ns


def _text(value: str) -> str:
    """`value` with the bytes that were not UTF-8 (escaped by the decoder) replaced by U+FFFD."""
    if value.isascii():
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _clean(value: Any) -> Any:
    """`value` with every string in it made valid UTF-8 (see `_text`)."""
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, dict):
        return {_clean(key): _clean(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_clean(item) for item in value]
    return value


def _peer_name(writer: asyncio.StreamWriter) -> str:
    host, port = writer.get_extra_info("peername")[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
