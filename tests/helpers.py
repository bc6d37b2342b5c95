"""Helpers for tests against the real broker: consuming a topic, running the collector and workers."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer

from collector.service import run_collector
from collector.settings import CollectorSettings
from pioneer_base.config import KafkaSettings
from pioneer_base.kafka_local import free_port
from streams.envelope import envelopes
from streams.topics import TopicSettings


def kafka_settings(kafka: str | KafkaSettings) -> KafkaSettings:
    """A bootstrap address (the plaintext session broker) or whole client settings (a secured one)."""
    return kafka if isinstance(kafka, KafkaSettings) else KafkaSettings(bootstrap_servers=kafka)


def consume_envelopes(
    bootstrap: str | KafkaSettings, topic: str, expected: int, timeout_s: float = 60, settle_s: float = 1.0
) -> list[dict]:
    """Every envelope (line) of the raw `topic`, however many a record carries (see streams.envelope)."""
    return consume(bootstrap, topic, expected, timeout_s, settle_s, decode=envelopes)


def consume(
    bootstrap: str | KafkaSettings,
    topic: str,
    expected: int,
    timeout_s: float = 60,
    settle_s: float = 1.0,
    *,
    decode: Callable[[bytes], list[dict]] = lambda value: [json.loads(value)],
) -> list[dict]:
    """Every message of `topic`, once at least `expected` arrived and nothing more came for `settle_s`."""

    async def run() -> list[dict]:
        consumer = AIOKafkaConsumer(
            topic, **kafka_settings(bootstrap).client_options(), auto_offset_reset="earliest"
        )
        await consumer.start()
        messages: list[dict] = []
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=int(settle_s * 1000))
                if not batch and len(messages) >= expected:
                    break
                messages += [item for records in batch.values() for r in records for item in decode(r.value)]
        finally:
            await consumer.stop()
        return messages

    return asyncio.run(run())


def settings_for(log_dir: Path, tmp_path: Path, **overrides: object) -> CollectorSettings:
    return CollectorSettings(
        paths=[str(log_dir / "*.log")],
        start_at="beginning",
        checkpoint_file=tmp_path / "positions.json",
        poll_interval_s=0.05,
        rotate_wait_s=0.5,
        status_interval_s=5,
        **overrides,
    )


def wait_for_port(port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on port {port}"
            time.sleep(0.1)


class CollectorThread:
    """run_collector in its own thread and event loop, as the CLI runs it."""

    def __init__(
        self, settings: CollectorSettings, bootstrap: str | KafkaSettings, topics: TopicSettings
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self.stop_event = asyncio.Event()
        kafka = kafka_settings(bootstrap)
        coroutine = run_collector(settings, kafka, topics, self.stop_event)
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(coroutine,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()


class PacedLogs:
    """Copies simulated pod logs into a watched folder a slice at a time, as pods would print them, so
    faults land mid-stream; `done` is set once every line is written."""

    def __init__(self, staged: Path, live: Path, slices: int = 400, pause_s: float = 0.05) -> None:
        self.lines = {p.name: p.read_text().splitlines(keepends=True) for p in sorted(staged.glob("*.log"))}
        self.live, self.slices, self.pause_s = live, slices, pause_s
        live.mkdir(parents=True, exist_ok=True)
        for name in self.lines:
            (live / name).touch()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._write, daemon=True)

    def start(self) -> PacedLogs:
        self.thread.start()
        return self

    def _write(self) -> None:
        files = {name: (self.live / name).open("a") for name in self.lines}
        try:
            for step in range(self.slices):
                for name, lines in self.lines.items():
                    size = -(-len(lines) // self.slices)
                    files[name].writelines(lines[step * size : (step + 1) * size])
                    files[name].flush()
                time.sleep(self.pause_s)
        finally:
            for file in files.values():
                file.close()
            self.done.set()


def unique_topics(prefix: str) -> TopicSettings:
    return TopicSettings(
        raw=f"{prefix}.raw", events=f"{prefix}.events", deadletter=f"{prefix}.dl", aggregates=f"{prefix}.agg"
    )


def worker_env(
    bootstrap: str, topics: TopicSettings, app_id: str, kafka_env: dict[str, str] | None = None
) -> dict[str, str]:
    """A worker's environment; `kafka_env`: a secured broker's client settings (its client.env)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIONEER_")}
    return (
        env
        | (kafka_env or {})
        | {
            "KAFKA_BOOTSTRAP_SERVERS": (kafka_env or {}).get("KAFKA_BOOTSTRAP_SERVERS", bootstrap),
            "PIONEER_TOPICS_RAW": topics.raw,
            "PIONEER_TOPICS_EVENTS": topics.events,
            "PIONEER_TOPICS_DEADLETTER": topics.deadletter,
            "PIONEER_TOPICS_AGGREGATES": topics.aggregates,
            "PIONEER_WORKER_APP_ID": app_id,
        }
    )


class ReadsApi(Protocol):
    """Anything that answers read API requests: an `ApiClient`, a `WorkerProcess`."""

    def get(self, endpoint: str, /, **params: Any) -> Any: ...


class ApiClient:
    """The read API of a worker wherever it runs (a subprocess, a container), with its token if any."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url
        self.token = token

    def get(self, endpoint: str, /, **params: Any) -> Any:
        query = "&".join(f"{k}={urllib.request.quote(str(v))}" for k, v in params.items())
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        request = urllib.request.Request(f"{self.url}/api/v1/{endpoint}?{query}", headers=headers)
        with urllib.request.urlopen(request, timeout=15) as response:
            return json.load(response)

    def wait_until(
        self,
        check: Any,
        timeout_s: float = 120,
        what: str = "condition",
        alive: Callable[[], str | None] = lambda: None,
    ) -> Any:
        """Poll `check(self)` until it returns a truthy value; `alive` says why to give up early (or None)."""
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            dead = alive()
            assert dead is None, dead
            try:
                last = check(self)
                if last:
                    return last
            except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError):
                pass
            time.sleep(0.5)
        raise AssertionError(f"{what} not reached in {timeout_s} s (last: {last!r})")


class WorkerProcess:
    """`pioneer-telemetry worker` as a subprocess on a free port, with its own data dir."""

    def __init__(self, env: dict[str, str], data_dir: Path, log_path: Path) -> None:
        self.env = env
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> WorkerProcess:
        command = [sys.executable, "-m", "pioneer_telemetry", "worker", "--web-port", str(self.port),
                   "--data-dir", str(self.data_dir)]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def get(self, endpoint: str, /, **params: Any) -> Any:
        """An API answer, with the worker's own token when it has one."""
        return ApiClient(self.url, self.env.get("PIONEER_WORKER_API_TOKEN")).get(endpoint, **params)

    def wait_until(self, check: Any, timeout_s: float = 120, what: str = "condition") -> Any:
        """Poll `check(self)` until it returns a truthy value; the worker must stay alive meanwhile."""
        try:
            return ApiClient(self.url).wait_until(lambda _: check(self), timeout_s, what, self._died)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.log_tail()}") from None

    def _died(self) -> str | None:
        assert self.process is not None
        return None if self.process.poll() is None else f"the worker exited\n{self.log_tail()}"

    def kill(self, signal_number: int) -> None:
        assert self.process is not None
        self.process.send_signal(signal_number)
        self.process.wait(timeout=60)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
