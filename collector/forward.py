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

Authentication (`ForwardAuth`): the secure-forward handshake as Fluent Bit's `forward` output
(`Shared_Key`, `Username`, `Password`) and Fluentd's `<security>` speak it. The server sends
`["HELO", {nonce, auth, keepalive}]`; the client answers `["PING", hostname, salt, sha512_hex(salt +
hostname + nonce + shared_key), username, sha512_hex(auth_salt + username + password)]`; the server
checks both digests (constant time) and answers `["PONG", ok, reason, hostname, sha512_hex(salt +
server hostname + nonce + shared_key)]`. A client that fails is refused before any record is read. TLS
(`ssl`) wraps the whole connection; plain TCP to a TLS server fails its handshake.

What one peer can cost is bounded: `max_connections` open at once (more are closed at once), a
connection idle for `idle_timeout_s` is closed (one that has not completed the handshake within
`HANDSHAKE_TIMEOUT_S`, too), a PING may take `HANDSHAKE_BYTES` and a message `MAX_MESSAGE_BYTES`.

Not implemented: Fluentd's UDP heartbeat, JSON instead of msgpack, zstd, and Fluent Bit's metrics and
traces (option `fluent_signal` other than 0).

A malformed or oversized message closes that client's connection, with a warning; others go on. Records
of that message decoded before the fault may already be delivered; it is not acknowledged, so a client
that asked for an ack sends them again.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import os
import re
import reprlib
import ssl
import struct
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack

from collector.lines import LineSink, LogLine, kubernetes_metadata, rfc3339_nano
from streams.identity import PodMeta

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
"""Largest message, and largest entry of a (decompressed) packed event stream, a client may send. Fluent
Bit's own forward input allows 6 MB; Fluentd's default memory buffer chunk is 8 MB."""

HANDSHAKE_BYTES = 4096
HANDSHAKE_TIMEOUT_S = 10.0

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

    def __init__(self, limit: int = _UNPACKER_LIMIT) -> None:
        # surrogateescape: Fluentd sends packed entries as a str of binary data, which must survive
        # decoding; `_text` turns such escapes into U+FFFD where a string is used as text.
        self._unpacker = msgpack.Unpacker(
            raw=False,
            strict_map_key=False,
            unicode_errors="surrogateescape",
            ext_hook=_ext_hook,
            max_buffer_size=limit,
        )
        self._limit = limit
        self._fed = 0

    def decode(self, data: bytes) -> Iterator[Any]:
        """The objects that `data` completes."""
        try:
            self._unpacker.feed(data)
        except msgpack.BufferFull:
            raise _ProtocolError(f"message (or packed entry) larger than {self._limit} bytes") from None
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
    handshakes_refused: int = 0  # wrong shared key or user, or no PING in time
    connections_refused: int = 0  # over max_connections
    idle_closed: int = 0


@dataclass(frozen=True)
class ForwardAuth:
    """The secure-forward handshake's secrets: the shared key, and users (name -> password) if any."""

    shared_key: str
    hostname: str  # ours, as the PONG names it
    users: Mapping[str, str] = field(default_factory=dict)


class _Refused(Exception):
    """The client failed the handshake; the reason goes back in the PONG."""


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

    def __init__(
        self,
        sink: LineSink,
        host: str = "127.0.0.1",
        port: int = 24224,
        *,
        auth: ForwardAuth | None = None,
        tls: ssl.SSLContext | None = None,
        max_connections: int = 100,
        idle_timeout_s: float = 300.0,
    ) -> None:
        self.sink = sink
        self.host = host
        self.port = port  # the bound port once started (useful with port 0)
        self.auth = auth
        self.tls = tls
        self.max_connections = max_connections
        self.idle_timeout_s = idle_timeout_s
        self.stats = ForwardStats()
        self._server: asyncio.Server | None = None
        self._closing = False
        self._handlers: set[asyncio.Task[None]] = set()
        self._idle: set[asyncio.Task[None]] = set()  # handlers waiting for the next bytes

    async def start(self) -> None:
        tls = {"ssl": self.tls, "ssl_handshake_timeout": HANDSHAKE_TIMEOUT_S} if self.tls else {}
        self._server = await asyncio.start_server(self._serve, self.host, self.port, **tls)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info(
            "forward protocol server listening on %s:%d (%s, %s)",
            self.host,
            self.port,
            "TLS" if self.tls else "plain TCP",
            "shared key" + (" and users" if self.auth and self.auth.users else "")
            if self.auth
            else "no auth",
        )

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
        conn = _Connection(_peer_name(writer), writer)
        if self.stats.connections_open >= self.max_connections:
            self.stats.connections_refused += 1
            log.warning("forward client %s: over %d connections; closing it", conn.peer, self.max_connections)
            writer.close()
            return
        self._handlers.add(task)
        self.stats.connections_accepted += 1
        self.stats.connections_open += 1
        decoder = _Decoder()
        try:
            if self.auth is not None:
                await self._handshake(reader, conn, self.auth)
            while not self._closing:
                data = await self._read(reader, task, self.idle_timeout_s)
                if not data:
                    if decoder.pending:
                        raise _ProtocolError(f"disconnected {decoder.pending} bytes into a message")
                    break
                for message in decoder.decode(data):
                    await self._receive(conn, message)
        except TimeoutError:
            self.stats.idle_closed += 1
            log.info(
                "forward client %s: idle for %.0f s; closing its connection", conn.peer, self.idle_timeout_s
            )
        except _Refused as refusal:
            self.stats.handshakes_refused += 1
            log.warning("forward client %s refused: %s", conn.peer, refusal)
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

    async def _read(self, reader: asyncio.StreamReader, task: asyncio.Task[None], timeout_s: float) -> bytes:
        """The next bytes, or TimeoutError after `timeout_s` without any; `close` cancels this wait."""
        self._idle.add(task)
        try:
            return await asyncio.wait_for(reader.read(_READ_SIZE), timeout_s)
        finally:
            self._idle.discard(task)

    async def _handshake(self, reader: asyncio.StreamReader, conn: _Connection, auth: ForwardAuth) -> None:
        """HELO, the client's PING, our PONG: returns once the client proved the shared key (and its user's
        password); raises `_Refused` (after telling the client why) otherwise. No record is read before."""
        task = asyncio.current_task()
        assert task is not None
        nonce, user_salt = os.urandom(16), os.urandom(16) if auth.users else b""
        conn.writer.write(msgpack.packb(["HELO", {"nonce": nonce, "auth": user_salt, "keepalive": True}]))
        await conn.writer.drain()
        decoder = _Decoder(HANDSHAKE_BYTES)
        deadline = asyncio.get_running_loop().time() + HANDSHAKE_TIMEOUT_S
        while True:
            left = deadline - asyncio.get_running_loop().time()
            try:
                data = await self._read(reader, task, max(left, 0.0))
            except TimeoutError:
                raise _Refused(f"no PING within {HANDSHAKE_TIMEOUT_S:.0f} s") from None
            if not data:
                raise _Refused("disconnected before its PING")
            messages = list(decoder.decode(data))
            if messages:
                break
        if len(messages) > 1 or decoder.pending:
            raise _ProtocolError("sent records before the handshake completed")
        try:
            salt = _check_ping(messages[0], nonce, user_salt, auth)
        except _Refused as refusal:
            conn.writer.write(msgpack.packb(["PONG", False, str(refusal), auth.hostname, ""]))
            await conn.writer.drain()
            raise
        digest = _digest(salt, auth.hostname.encode(), nonce, auth.shared_key.encode())
        conn.writer.write(msgpack.packb(["PONG", True, "", auth.hostname, digest]))
        await conn.writer.drain()

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


def _digest(*parts: bytes) -> str:
    return hashlib.sha512(b"".join(parts)).hexdigest()


def _raw(value: object) -> bytes:
    """A handshake field as bytes: clients send salts and names as str or bin."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    raise _Refused("invalid PING")


def _check_ping(ping: object, nonce: bytes, user_salt: bytes, auth: ForwardAuth) -> bytes:
    """The PING's shared-key salt, once its digests are right; `_Refused` otherwise."""
    if not (isinstance(ping, list) and len(ping) == 6 and ping[0] == "PING"):
        raise _Refused("invalid PING")
    _, hostname, salt, key_digest, username, password_digest = ping
    expected = _digest(_raw(salt), _raw(hostname), nonce, auth.shared_key.encode())
    if not hmac.compare_digest(_raw(key_digest), expected.encode()):
        raise _Refused("shared_key mismatch")
    if auth.users:
        name = _raw(username).decode("utf-8", "replace")
        password = auth.users.get(name)
        right = _digest(user_salt, _raw(username), (password or "").encode())
        if not hmac.compare_digest(_raw(password_digest), right.encode()) or password is None:
            raise _Refused("username/password mismatch")
    return _raw(salt)


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
