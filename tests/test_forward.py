"""The forward protocol server against fluent-logger and hand-built messages; a fake sink stands for Kafka."""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import gzip
import struct
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any

import msgpack
import pytest
from fluent import asyncsender, sender

from collector.forward import MAX_MESSAGE_BYTES, ForwardServer
from collector.lines import LogLine

NS = 1_795_716_923_471_000_001
STAMP = "2026-11-26T18:15:23.471000001Z"
SECONDS = NS // 1_000_000_000
CONTAINER_ID = "0f" * 32
KUBE_TAG = f"kube.var.log.containers.jupyter-alice_dev_notebook-{CONTAINER_ID}.log"
EVENT = '{"eventDetail": {"eventName": "CellExecuteEvent"}}'
NO_POD = {"pod_name": None, "namespace_name": None, "container_name": None, "labels": {}, "annotations": {}}


class FakeSink:
    """An in-memory `LineSink`: keeps every line; acknowledges at once, or on `release()` when holding."""

    def __init__(self, hold: bool = False) -> None:
        self.hold = hold
        self.lines: list[LogLine] = []
        self.batch_sizes: list[int] = []
        self.pending: list[asyncio.Future[None]] = []
        self._arrived = asyncio.Event()

    async def submit(self, lines: Sequence[LogLine]) -> asyncio.Future[None]:
        self.lines += lines
        self.batch_sizes.append(len(lines))
        self._arrived.set()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.hold:
            self.pending.append(future)
        else:
            future.set_result(None)
        return future

    def release(self) -> None:
        for future in self.pending:
            future.set_result(None)
        self.pending.clear()

    async def wait_for(self, count: int) -> list[LogLine]:
        while len(self.lines) < count:
            self._arrived.clear()
            await self._arrived.wait()
        return self.lines

    def texts(self) -> list[str]:
        return [line.log for line in self.lines]


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), timeout=10))


@contextlib.asynccontextmanager
async def serving(sink: FakeSink) -> AsyncIterator[ForwardServer]:
    server = ForwardServer(sink, port=0)
    await server.start()
    try:
        yield server
    finally:
        await server.close(grace_s=1)


async def connect(
    server: ForwardServer, *messages: bytes
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"".join(messages))
    await writer.drain()
    return reader, writer


async def replies(reader: asyncio.StreamReader, count: int = 1) -> list[object]:
    """The next `count` msgpack objects the server sends on a connection (everything it sent is read)."""
    unpacker = msgpack.Unpacker()
    objects: list[object] = []
    async with asyncio.timeout(5):
        while len(objects) < count:
            data = await reader.read(1024)
            assert data, "connection closed before the replies"
            unpacker.feed(data)
            objects += unpacker
    assert len(objects) == count, objects
    return objects


async def assert_closed_by_server(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(ConnectionError):
        async with asyncio.timeout(5):
            while await reader.read(65536):
                pass


def event_time(ns: int) -> msgpack.ExtType:
    return msgpack.ExtType(0, struct.pack(">II", *divmod(ns, 1_000_000_000)))


def packed(*items: object) -> bytes:
    return b"".join(msgpack.packb(item) for item in items)


def entries(texts: Sequence[str]) -> list[list[object]]:
    return [[event_time(NS), {"log": f"{text}\n", "stream": "stderr"}] for text in texts]


def ns_of(stamp: str) -> int:
    second, _, fraction = stamp.removesuffix("Z").partition(".")
    seconds = calendar.timegm(time.strptime(second, "%Y-%m-%dT%H:%M:%S"))
    return seconds * 1_000_000_000 + int(fraction.ljust(9, "0"))


# ---- real clients: fluent-logger --------------------------------------------------------------------


@pytest.mark.parametrize("nanosecond_precision", [False, True])
def test_fluent_logger_records_arrive_with_text_tag_and_time(nanosecond_precision: bool) -> None:
    def emit(port: int) -> None:
        client = sender.FluentSender(
            "jupyter", host="127.0.0.1", port=port, nanosecond_precision=nanosecond_precision
        )
        for i in range(5):
            assert client.emit("pioneer", {"message": f"line {i}\n", "level": "INFO"}), client.last_error
        client.close()

    async def scenario() -> None:
        sink = FakeSink()
        async with serving(sink) as server:
            before = time.time_ns()
            await asyncio.to_thread(emit, server.port)
            lines = await sink.wait_for(5)
            after = time.time_ns()
        assert [line.log for line in lines] == [f"line {i}" for i in range(5)]
        assert [line.offset for line in lines] == list(range(5))
        for line in lines:
            assert line.extra == {"tag": "jupyter.pioneer"}
            assert line.kubernetes == NO_POD
            assert line.stream == "stderr"
            assert line.source_id.startswith("forward:127.0.0.1:")
            assert line.source_id.endswith(":jupyter.pioneer")
            if nanosecond_precision:
                assert before <= ns_of(line.time) <= after
            else:
                assert "." not in line.time
                assert before // 10**9 <= ns_of(line.time) // 10**9 <= after // 10**9
        assert server.stats.records_received == 5
        assert server.stats.messages_acked == 0

    run(scenario)


def test_fluent_logger_async_sender() -> None:
    def emit(port: int) -> None:
        client = asyncsender.FluentSender("jupyter", host="127.0.0.1", port=port)
        for i in range(50):
            assert client.emit_with_time(
                "pioneer", sender.EventTime.from_unix_nano(NS + i), {"message": f"async {i}"}
            )
        client.close()

    async def scenario() -> None:
        sink = FakeSink()
        async with serving(sink) as server:
            await asyncio.to_thread(emit, server.port)
            lines = await sink.wait_for(50)
        assert [line.log for line in lines] == [f"async {i}" for i in range(50)]
        assert lines[1].time == "2026-11-26T18:15:23.471000002Z"

    run(scenario)


# ---- the protocol's modes ---------------------------------------------------------------------------


def test_message_mode_with_and_without_option() -> None:
    async def scenario() -> None:
        sink = FakeSink()
        async with serving(sink) as server:
            reader, writer = await connect(
                server,
                msgpack.packb(["app", SECONDS, {"log": "first\n"}]),
                msgpack.packb(["app", SECONDS, {"log": "second"}, {}]),
                msgpack.packb(["app", SECONDS, {"log": "third"}, {"chunk": "c-3"}]),
            )
            assert await replies(reader) == [{"ack": "c-3"}]
            writer.close()
        assert sink.texts() == ["first", "second", "third"]
        assert {line.time for line in sink.lines} == {"2026-11-26T18:15:23Z"}
        assert server.stats.messages_acked == 1

    run(scenario)


def test_forward_mode_with_chunk() -> None:
    async def scenario() -> None:
        sink = FakeSink()
        async with serving(sink) as server:
            message = msgpack.packb(["app", entries(["a", "b", "c"]), {"chunk": "f-1", "size": 3}])
            reader, writer = await connect(server, message, msgpack.packb(["app", entries(["d"])]))
            assert await replies(reader) == [{"ack": "f-1"}]
            await sink.wait_for(4)
            writer.close()
        assert sink.texts() == ["a", "b", "c", "d"]
        assert [line.offset for line in sink.lines] == [0, 1, 2, 3]
        assert {line.time for line in sink.lines} == {STAMP}

    run(scenario)


def test_packed_forward_as_bin_and_as_str() -> None:
    async def scenario() -> None:
        sink = FakeSink()
        stream = packed(*entries(["bin 1", "bin 2"]))
        as_bin = msgpack.packb(["app", stream, {"chunk": "p-bin"}])
        # as Fluentd's out_forward sends them: entries as str32 (binary data, not UTF-8), chunk in base64
        stream = packed(*entries(["str 1", "str 2"]))
        as_str = (
            b"\x93"
            + msgpack.packb("app")
            + b"\xdb"
            + struct.pack(">I", len(stream))
            + stream
            + msgpack.packb({"size": 2, "compressed": "text", "chunk": "cC1zdHI=\n"})
        )
        async with serving(sink) as server:
            reader, writer = await connect(server, as_bin, as_str)
            assert await replies(reader, 2) == [{"ack": "p-bin"}, {"ack": "cC1zdHI=\n"}]
            writer.close()
        assert sink.texts() == ["bin 1", "bin 2", "str 1", "str 2"]
        assert {line.time for line in sink.lines} == {STAMP}

    run(scenario)


def test_compressed_packed_forward_with_concatenated_gzip_members() -> None:
    async def scenario() -> None:
        sink = FakeSink()
        one = gzip.compress(packed(*entries(["gz 1"])))
        two = gzip.compress(packed(*entries([f"gz {i}" for i in range(2, 2001)])))
        message = msgpack.packb(["app", one + two, {"compressed": "gzip", "chunk": "gz", "size": 2000}])
        async with serving(sink) as server:
            reader, writer = await connect(server, message)
            assert await replies(reader) == [{"ack": "gz"}]
            writer.close()
        assert sink.texts() == [f"gz {i}" for i in range(1, 2001)]
        assert len(sink.batch_sizes) > 1  # a large message meets the sink's backpressure in steps

    run(scenario)


def test_ack_is_sent_only_once_the_sink_acknowledged_every_record() -> None:
    async def scenario() -> None:
        sink = FakeSink(hold=True)
        async with serving(sink) as server:
            message = msgpack.packb(["app", entries([f"r{i}" for i in range(2500)]), {"chunk": "held"}])
            reader, writer = await connect(server, message)
            await sink.wait_for(2500)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.read(100), 0.3)
            assert server.stats.messages_acked == 0
            assert len(sink.pending) > 1  # submitted in batches: the ack waits for the last one too
            last = sink.pending.pop()
            sink.release()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.read(100), 0.1)
            last.set_result(None)
            assert await replies(reader) == [{"ack": "held"}]
            assert server.stats.messages_acked == 1
            writer.close()

    run(scenario)


def test_a_failed_delivery_is_not_acknowledged() -> None:
    async def scenario() -> None:
        sink = FakeSink(hold=True)
        async with serving(sink) as server:
            reader, writer = await connect(
                server, msgpack.packb(["app", SECONDS, {"log": "x"}, {"chunk": "lost"}])
            )
            await sink.wait_for(1)
            sink.pending.pop().set_exception(OSError("kafka is gone"))
            await assert_closed_by_server(reader)
            assert server.stats.messages_acked == 0
            writer.close()

    run(scenario)


def test_event_time_integer_and_float_times() -> None:
    async def scenario() -> None:
        sink = FakeSink()
        times = [event_time(NS), SECONDS, SECONDS + 0.25, event_time(SECONDS * 10**9), 0]
        async with serving(sink) as server:
            _, writer = await connect(server, msgpack.packb(["app", [[t, {"log": "x"}] for t in times]]))
            await sink.wait_for(len(times))
            writer.close()
        assert [line.time for line in sink.lines] == [
            STAMP,
            "2026-11-26T18:15:23Z",
            "2026-11-26T18:15:23.25Z",
            "2026-11-26T18:15:23Z",
            "1970-01-01T00:00:00Z",
        ]

    run(scenario)


# ---- records to lines -------------------------------------------------------------------------------


def test_kubernetes_metadata_from_the_record_the_tag_or_neither() -> None:
    kubernetes = {
        "pod_name": "jupyter-bob",
        "namespace_name": "prod",
        "container_name": "notebook",
        "pod_id": "4f1c",
        "labels": {"hub.jupyter.org/username": "bob", "component": "singleuser-server"},
        "annotations": {"hub.jupyter.org/username": "bob@example.org"},
    }

    async def scenario() -> None:
        sink = FakeSink()
        async with serving(sink) as server:
            _, writer = await connect(
                server,
                msgpack.packb([KUBE_TAG, SECONDS, {"log": "from record", "kubernetes": kubernetes}]),
                msgpack.packb([KUBE_TAG, SECONDS, {"log": "from tag", "stream": "stdout"}]),
                msgpack.packb(["other.tag", SECONDS, {"log": "from neither"}]),
            )
            await sink.wait_for(3)
            writer.close()
        from_record, from_tag, from_neither = sink.lines
        assert from_record.kubernetes == {
            "pod_name": "jupyter-bob",
            "namespace_name": "prod",
            "container_name": "notebook",
            "labels": kubernetes["labels"],
            "annotations": kubernetes["annotations"],
        }
        assert from_record.extra == {}
        assert from_tag.kubernetes == {
            "pod_name": "jupyter-alice",
            "namespace_name": "dev",
            "container_name": "notebook",
            "labels": {},
            "annotations": {},
        }
        assert (from_tag.stream, from_tag.extra) == ("stdout", {})
        assert from_tag.source_id.endswith(f":{KUBE_TAG}")
        assert from_neither.kubernetes == NO_POD
        assert from_neither.extra == {"tag": "other.tag"}

    run(scenario)


def test_text_from_log_or_message_decoded_and_records_without_text_skipped() -> None:
    records = [
        {"log": "log wins\n", "message": "not this"},
        {"message": EVENT + "\n\n"},
        {"log": b"bytes \xff\n"},
        {"level": "INFO"},
        {"log": 42},
        {"message": "last"},
    ]

    async def scenario() -> None:
        sink = FakeSink()
        invalid_utf8 = msgpack.packb(["app", SECONDS, {"log": "x"}]).replace(b"\xa1x", b"\xa2\xc3(")
        async with serving(sink) as server:
            _, writer = await connect(
                server, msgpack.packb(["app", [[SECONDS, record] for record in records]]), invalid_utf8
            )
            await sink.wait_for(5)
            writer.close()
        assert sink.texts() == ["log wins", EVENT + "\n", "bytes \ufffd", "last", "\ufffd("]
        assert [line.offset for line in sink.lines] == [0, 1, 2, 5, 6]
        assert (server.stats.records_received, server.stats.records_skipped) == (7, 2)

    run(scenario)


def test_many_records_arrive_complete_and_in_order_per_connection() -> None:
    async def scenario() -> None:
        sink = FakeSink()
        async with serving(sink) as server:
            streams = [
                [
                    packed(*entries([f"{client}-{i}" for i in range(start, start + 1000)]))
                    for start in range(0, 5000, 1000)
                ]
                for client in ("a", "b")
            ]
            connections = [
                await connect(
                    server, *(msgpack.packb(["app", s, {"chunk": f"{n}"}]) for n, s in enumerate(messages))
                )
                for messages in streams
            ]
            for reader, _ in connections:
                assert await replies(reader, 5) == [{"ack": f"{n}"} for n in range(5)]
            for _, writer in connections:
                writer.close()
        assert len(sink.lines) == 10_000
        for client in ("a", "b"):
            lines = [line for line in sink.lines if line.log.startswith(client)]
            assert [line.log for line in lines] == [f"{client}-{i}" for i in range(5000)]
            assert [line.offset for line in lines] == list(range(5000))
            assert len({line.source_id for line in lines}) == 1
        assert server.stats.messages_acked == 10

    run(scenario)


# ---- robustness -------------------------------------------------------------------------------------

BAD_INPUT = {
    "garbage": b"\xc1\xc1\xc1 not msgpack at all",
    "http": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "map at top level": msgpack.packb({"tag": "app", "log": "x"}),
    "array without tag": msgpack.packb([1, 2, 3]),
    "too many elements": msgpack.packb(["app", SECONDS, {"log": "x"}, {}, {}]),
    "record not a map": msgpack.packb(["app", SECONDS, "x"]),
    "time neither EventTime nor number": msgpack.packb(["app", None, {"log": "x"}]),
    "time before 1970": msgpack.packb(["app", [[-1, {"log": "x"}]]]),
    "time not finite": msgpack.packb(["app", [[float("nan"), {"log": "x"}]]]),
    "option not a map": msgpack.packb(["app", [], "x"]),
    "entry not a pair": msgpack.packb(["app", [[SECONDS]]]),
    "Fluent Bit metrics": msgpack.packb(["app", b"cmetrics", {"fluent_signal": 1}]),
    "unknown compression": msgpack.packb(["app", packed(*entries(["x"])), {"compressed": "zstd"}]),
    "not gzip": msgpack.packb(["app", b"not gzip data", {"compressed": "gzip"}]),
    "truncated gzip": msgpack.packb(
        ["app", gzip.compress(packed(*entries(["x"])))[:-12], {"compressed": "gzip"}]
    ),
    "truncated packed entry": msgpack.packb(["app", packed(*entries(["x"]))[:-3]]),
    "truncated then disconnect": msgpack.packb(["app", SECONDS, {"log": "x" * 1000}])[:-10],
    "oversized": msgpack.packb(["app", b"\x00" * (MAX_MESSAGE_BYTES + 2 * 65536)]),
}


@pytest.mark.parametrize("data", BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_bad_input_closes_that_connection_and_the_server_goes_on(data: bytes) -> None:
    async def scenario() -> None:
        sink = FakeSink()
        async with serving(sink) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            with contextlib.suppress(ConnectionError):
                writer.write(data)
                await writer.drain()
                if data == BAD_INPUT["truncated then disconnect"]:
                    writer.write_eof()
            await assert_closed_by_server(reader)
            writer.close()
            assert server.stats.protocol_errors == 1

            reader, writer = await connect(
                server, msgpack.packb(["app", SECONDS, {"log": "ok"}, {"chunk": "k"}])
            )
            assert await replies(reader) == [{"ack": "k"}]
            writer.close()
        assert [line.log for line in sink.lines if line.log != "x"] == ["ok"]
        assert server.stats.connections_open == 0

    run(scenario)


def test_a_bad_client_does_not_disturb_another_connection() -> None:
    async def scenario() -> None:
        sink = FakeSink()
        async with serving(sink) as server:
            good_reader, good = await connect(server, msgpack.packb(["app", SECONDS, {"log": "before"}]))
            bad_reader, bad = await connect(server, b"\xc1garbage")
            await assert_closed_by_server(bad_reader)
            bad.close()
            good.write(msgpack.packb(["app", SECONDS, {"log": "after"}, {"chunk": "g"}]))
            assert await replies(good_reader) == [{"ack": "g"}]
            assert server.stats.connections_open == 1
            good.close()
        assert sink.texts() == ["before", "after"]
        assert (server.stats.connections_accepted, server.stats.protocol_errors) == (2, 1)

    run(scenario)


# ---- shutdown ---------------------------------------------------------------------------------------


def test_close_lets_an_in_flight_message_be_acknowledged_and_closes_idle_connections() -> None:
    async def scenario() -> None:
        sink = FakeSink(hold=True)
        server = ForwardServer(sink, port=0)
        await server.start()
        idle_reader, idle = await connect(server)
        busy_reader, busy = await connect(
            server, msgpack.packb(["app", SECONDS, {"log": "x"}, {"chunk": "last"}])
        )
        await sink.wait_for(1)
        closing = asyncio.create_task(server.close(grace_s=5))
        await assert_closed_by_server(idle_reader)
        assert not closing.done()
        with pytest.raises(ConnectionError):
            await asyncio.open_connection("127.0.0.1", server.port)
        sink.release()
        assert await replies(busy_reader) == [{"ack": "last"}]
        await assert_closed_by_server(busy_reader)
        await closing
        assert server.stats.connections_open == 0
        idle.close()
        busy.close()

    run(scenario)


def test_close_cuts_what_is_still_unacknowledged_after_the_grace_period() -> None:
    async def scenario() -> None:
        sink = FakeSink(hold=True)
        server = ForwardServer(sink, port=0)
        await server.start()
        reader, writer = await connect(
            server, msgpack.packb(["app", SECONDS, {"log": "x"}, {"chunk": "never"}])
        )
        await sink.wait_for(1)
        started = time.monotonic()
        await server.close(grace_s=0.2)
        assert 0.2 <= time.monotonic() - started < 2
        await assert_closed_by_server(reader)
        assert not sink.pending[0].cancelled()  # the sink's future is the sink's business
        assert server.stats.messages_acked == 0
        writer.close()

    run(scenario)
