"""How simulated lines leave the simulator: named and framed as the kubelet stores them, then written to
log files, a stream (stdout) or Kafka (through the collector's own sink).
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from aiokafka import AIOKafkaProducer

from collector.edge import PodFilter
from collector.kafka_sink import KafkaSink as CollectorKafkaSink
from collector.lines import LogLine as CollectedLine
from collector.lines import rfc3339_nano
from collector.service import start_producer
from collector.settings import CollectorSettings
from pioneer_base.config import KafkaSettings
from streams.framing import Framing

if TYPE_CHECKING:
    from simulator.records import LogLine, Pod


MAX_CHUNK = 16 * 1024
"""Longest content per framed line (containerd's `max_container_log_line_size`, docker's buffer); longer lines
are split into partial chunks. Counted in characters: the long lines we produce are ASCII event lines."""

STREAM = "stderr"
"""Python's logging and Jupyter Server both write to stderr."""

# Go's encoding/json (docker's log driver) escapes these even in valid UTF-8 strings.
_GO_ESCAPED = re.compile("[<>&\u2028\u2029]")
_json_string = json.JSONEncoder(ensure_ascii=False).encode


def frame(line: str, ns: int, framing: Framing) -> str:
    """The text the runtime appends to the log file for one line written at `ns` (one or more `\\n`-ended lines)."""
    # Framing is a StrEnum; comparing values skips Enum's attribute lookup, which shows on this hot path.
    if framing == "plain":
        return line + "\n"
    stamp = rfc3339_nano(ns)
    if len(line) <= MAX_CHUNK:
        return f"{stamp} {STREAM} F {line}\n" if framing == "cri" else _docker_line(line + "\n", stamp)
    *partials, last = [line[i : i + MAX_CHUNK] for i in range(0, len(line), MAX_CHUNK)]
    if framing == "cri":
        return "".join(f"{stamp} {STREAM} P {c}\n" for c in partials) + f"{stamp} {STREAM} F {last}\n"
    # docker marks a partial chunk by the missing newline at the end of `log`
    return "".join(_docker_line(c, stamp) for c in partials) + _docker_line(last + "\n", stamp)


def _docker_line(content: str, stamp: str) -> str:
    log = _json_string(content)
    if "<" in log or ">" in log or "&" in log or not log.isascii():  # rare: skip the regex otherwise
        log = _GO_ESCAPED.sub(lambda m: f"\\u{ord(m[0]):04x}", log)
    return f'{{"log":{log},"stream":"{STREAM}","time":"{stamp}"}}\n'


BUFFERED_LINES = 8192
"""Lines a sink holds before writing; sinks always write whole lines, so a tailer never waits on half of one."""

KAFKA_BATCH = 2000
"""Lines handed to the producer at once; each batch is awaited until acknowledged, which surfaces errors."""


class Sink(Protocol):
    def write(self, line: LogLine, framed: str) -> None:
        """Take one line; `framed` is how the container runtime stores it."""

    def flush(self) -> None:
        """Write out everything taken so far."""

    def close(self) -> None:
        """Flush and release resources."""


class StreamSink:
    """All pods' framed lines, interleaved in time order, to one binary stream such as stdout."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._pending: list[bytes] = []

    def write(self, line: LogLine, framed: str) -> None:
        self._pending.append(framed.encode())
        if len(self._pending) >= BUFFERED_LINES:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._stream.write(b"".join(self._pending))
            self._stream.flush()
            self._pending.clear()

    def close(self) -> None:
        self.flush()


class FileSink:
    """One log file per pod in `directory`, named as under `/var/log/containers/`, started afresh each run."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._directory = directory
        # keyed by container id: hashing a str is cached, hashing the Pod dataclass is not
        self._files: dict[str, BinaryIO] = {}
        self._pending: dict[str, list[bytes]] = {}
        self._count = 0

    def write(self, line: LogLine, framed: str) -> None:
        pending = self._pending.get(line.pod.container_id)
        if pending is None:
            self._files[line.pod.container_id] = (self._directory / line.pod.log_file).open("wb")
            pending = self._pending[line.pod.container_id] = []
        # encoded line by line: joining str first would widen a whole batch for one non-ASCII line
        pending.append(framed.encode())
        self._count += 1
        if self._count >= BUFFERED_LINES:
            self.flush()

    def flush(self) -> None:
        for container_id, pending in self._pending.items():
            if pending:
                file = self._files[container_id]
                file.write(b"".join(pending))
                file.flush()
                pending.clear()
        self._count = 0

    def close(self) -> None:
        self.flush()
        for file in self._files.values():
            file.close()


def kubernetes_of(pod: Pod) -> dict[str, Any]:
    """The metadata Fluent Bit's kubernetes filter would attach to a line of this pod."""
    return {
        "pod_name": pod.name,
        "namespace_name": pod.namespace,
        "container_name": pod.container,
        "labels": {
            "hub.jupyter.org/username": pod.slug,
            "component": "singleuser-server",
            "app": "jupyterhub",
        },
        "annotations": {"hub.jupyter.org/username": pod.username},
    }


class KafkaSink:
    """Each line straight to the raw topic through the collector's own Kafka path (pre-filter, secrets
    removed at the edge, envelopes keyed by pod with the line's position in its would-be log file).

    The simulator is synchronous; a private event loop drives the collector's sink when a batch is flushed.
    """

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self._offsets: dict[str, int] = {}  # bytes written to each pod's log file, by container id
        self._pending: list[CollectedLine] = []
        self._runner = asyncio.Runner()
        try:
            self._producer, self._sink = self._runner.run(self._start(kafka, topic))
        except BaseException:
            self._runner.close()
            raise

    @staticmethod
    async def _start(kafka: KafkaSettings, topic: str) -> tuple[AIOKafkaProducer, CollectorKafkaSink]:
        settings = CollectorSettings()
        producer = await start_producer(kafka, settings, asyncio.Event())
        sink = CollectorKafkaSink(
            producer,
            topic,
            PodFilter([], "*", []),
            batch_bytes=settings.batch_bytes,
            record_lines=settings.record_lines,
        )
        try:
            await sink.start()
        except BaseException:
            await producer.stop()
            raise
        return producer, sink

    def write(self, line: LogLine, framed: str) -> None:
        offset = self._offsets.get(line.pod.container_id, 0)
        self._offsets[line.pod.container_id] = offset + len(framed.encode())
        self._pending.append(
            CollectedLine(
                line.text, STREAM, rfc3339_nano(line.ns), kubernetes_of(line.pod), line.pod.log_file, offset
            )
        )
        if len(self._pending) >= KAFKA_BATCH:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            batch, self._pending = self._pending, []
            self._runner.run(self._send(batch))

    async def _send(self, batch: list[CollectedLine]) -> None:
        await (await self._sink.submit(batch))

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._runner.run(self._stop())
            self._runner.close()

    async def _stop(self) -> None:
        try:
            await self._sink.close()
        finally:
            await self._producer.stop()
