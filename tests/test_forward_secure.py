"""The forward input's secure-forward handshake, TLS and limits, against a client written from the Forward
Protocol Specification v1 (fluent-logger has no handshake): what Fluent Bit's `forward` output does with
`Shared_Key`, `Username`/`Password` and `tls on`."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from collector.forward import HANDSHAKE_BYTES, ForwardAuth, ForwardServer
from collector.settings import CollectorSettings
from pioneer_base.tls import LocalPki
from tests.test_forward import FakeSink, run

KEY = "a shared key, long enough"
CLIENT = "node-1.example"


def sha512_hex(*parts: bytes) -> str:
    return hashlib.sha512(b"".join(parts)).hexdigest()


class SecureForwardClient:
    """The client side of the spec's handshake: read HELO, send PING, read PONG; then Message mode."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.unpacker = msgpack.Unpacker(raw=False)

    @classmethod
    async def connect(cls, port: int, tls: ssl.SSLContext | None = None) -> SecureForwardClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
        return cls(reader, writer)

    async def receive(self) -> Any:
        while True:
            for item in self.unpacker:
                return item
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("closed by the server")
            self.unpacker.feed(data)

    async def handshake(self, shared_key: str, username: str = "", password: str = "") -> list[Any]:
        helo = await self.receive()
        assert helo[0] == "HELO"
        nonce, user_salt = helo[1]["nonce"], helo[1]["auth"]
        salt = os.urandom(16)
        ping = ["PING", CLIENT, salt, sha512_hex(salt, CLIENT.encode(), nonce, shared_key.encode()), username,
                sha512_hex(user_salt, username.encode(), password.encode()) if user_salt else ""]  # fmt: skip
        self.writer.write(msgpack.packb(ping))
        await self.writer.drain()
        pong = await self.receive()
        assert pong[0] == "PONG"
        if pong[1]:  # the server proves it knows the key too
            assert pong[4] == sha512_hex(salt, pong[3].encode(), nonce, shared_key.encode())
        return pong

    async def send(self, text: str, chunk: str) -> Any:
        self.writer.write(msgpack.packb(["pioneer", int(time.time()), {"log": text}, {"chunk": chunk}]))
        await self.writer.drain()
        return await self.receive()

    def close(self) -> None:
        self.writer.close()


@contextlib.asynccontextmanager
async def serving(sink: FakeSink, **options: Any) -> AsyncIterator[ForwardServer]:
    server = ForwardServer(sink, port=0, **options)
    await server.start()
    try:
        yield server
    finally:
        await server.close(grace_s=1)


def test_a_good_shared_key_is_accepted_and_its_records_arrive() -> None:
    async def scenario() -> None:
        sink = FakeSink()
        async with serving(sink, auth=ForwardAuth(KEY, "collector-0")) as server:
            client = await SecureForwardClient.connect(server.port)
            pong = await client.handshake(KEY)
            assert pong[1:4] == [True, "", "collector-0"]
            assert await client.send("first line", "c1") == {"ack": "c1"}
            assert sink.texts() == ["first line"]
            client.close()

    run(scenario)


def test_a_bad_key_is_refused_before_any_record_is_read() -> None:
    async def scenario() -> None:
        sink = FakeSink()
        async with serving(sink, auth=ForwardAuth(KEY, "collector-0")) as server:
            client = await SecureForwardClient.connect(server.port)
            pong = await client.handshake("not the key")
            assert pong[1:3] == [False, "shared_key mismatch"]
            client.writer.write(msgpack.packb(["pioneer", int(time.time()), {"log": "sneaked in"}]))
            with contextlib.suppress(ConnectionError):
                await client.writer.drain()
                assert await client.reader.read() == b""  # the server hung up
            assert sink.lines == []
            assert server.stats.handshakes_refused == 1

    run(scenario)


def test_a_record_sent_instead_of_a_ping_is_refused_unread() -> None:
    async def scenario() -> None:
        sink = FakeSink()
        async with serving(sink, auth=ForwardAuth(KEY, "collector-0")) as server:
            client = await SecureForwardClient.connect(server.port)
            assert (await client.receive())[0] == "HELO"
            await client.send("no handshake", "c1")  # not a PING: refused with a PONG
            await asyncio.sleep(0.2)
            assert sink.lines == []
            assert server.stats.handshakes_refused == 1

    run(scenario)


def test_user_authentication_checks_the_password() -> None:
    async def scenario() -> None:
        sink = FakeSink()
        auth = ForwardAuth(KEY, "collector-0", {"fluent-bit": "p4ss"})
        async with serving(sink, auth=auth) as server:
            good = await SecureForwardClient.connect(server.port)
            assert (await good.handshake(KEY, "fluent-bit", "p4ss"))[1] is True
            assert await good.send("from a user", "u1") == {"ack": "u1"}
            for username, password in (("fluent-bit", "wrong"), ("nobody", "p4ss")):
                bad = await SecureForwardClient.connect(server.port)
                assert (await bad.handshake(KEY, username, password))[1:3] == [
                    False,
                    "username/password mismatch",
                ]
            assert sink.texts() == ["from a user"]

    run(scenario)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LocalPki:
    pki = LocalPki(tmp_path_factory.mktemp("forward-tls"))
    pki.create(["127.0.0.1"])
    return pki


def server_tls(pki: LocalPki) -> ssl.SSLContext:
    return CollectorSettings(
        forward_tls_certfile=pki.broker, forward_tls_keyfile=pki.broker, forward_shared_key=KEY
    ).forward_tls()  # type: ignore[return-value]


def test_with_tls_the_handshake_runs_inside_it_and_plain_tcp_is_refused(pki: LocalPki) -> None:
    async def scenario() -> None:
        sink = FakeSink()
        async with serving(sink, auth=ForwardAuth(KEY, "collector-0"), tls=server_tls(pki)) as server:
            client_tls = ssl.create_default_context(cafile=str(pki.ca))
            client = await SecureForwardClient.connect(server.port, client_tls)
            assert (await client.handshake(KEY))[1] is True
            assert await client.send("over TLS", "t1") == {"ack": "t1"}
            plain = await SecureForwardClient.connect(server.port)
            plain.writer.write(msgpack.packb(["pioneer", int(time.time()), {"log": "in the clear"}]))
            await plain.writer.drain()
            with pytest.raises(ConnectionError):
                await plain.receive()  # no HELO in the clear: the TLS handshake failed and it hung up
            assert sink.texts() == ["over TLS"]

    run(scenario)


def test_one_peer_costs_bounded_connections_time_and_bytes() -> None:
    async def scenario() -> None:
        sink = FakeSink()
        options = {"auth": ForwardAuth(KEY, "collector-0"), "max_connections": 2, "idle_timeout_s": 0.5}
        async with serving(sink, **options) as server:
            first = await SecureForwardClient.connect(server.port)
            second = await SecureForwardClient.connect(server.port)
            assert (await first.handshake(KEY))[1] is True
            assert (await second.receive())[0] == "HELO"
            third = await SecureForwardClient.connect(server.port)
            with pytest.raises(ConnectionError):
                await third.receive()  # over max_connections: closed without a HELO
            assert server.stats.connections_refused == 1
            with pytest.raises(ConnectionError):
                await first.receive()  # idle after its handshake: closed after idle_timeout_s
            assert server.stats.idle_closed == 1
            second.writer.write(msgpack.packb(["PING", "x" * HANDSHAKE_BYTES, "", "", "", ""]))
            await second.writer.drain()
            with pytest.raises(ConnectionError):
                await second.receive()  # a PING larger than HANDSHAKE_BYTES: cut off
            assert sink.lines == []

    run(scenario)


def test_settings_keep_an_unauthenticated_input_on_loopback(tmp_path: Path) -> None:
    assert CollectorSettings(forward_host="0.0.0.0").forward_bind_host == "127.0.0.1"
    assert CollectorSettings(forward_host="0.0.0.0", forward_shared_key=KEY).forward_bind_host == "0.0.0.0"
    with pytest.raises(ValueError, match="forward_shared_key"):
        CollectorSettings(forward_username="u", forward_password="p")
    with pytest.raises(ValueError, match="forward_tls_keyfile"):
        CollectorSettings(forward_tls_certfile=tmp_path / "cert.pem")
