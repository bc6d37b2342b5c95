"""What the Kafka benchmarks share: a private broker, raw record I/O, repeats and how results are shown.

Every benchmark starts its own broker (`LocalBroker` on a free port in a temp dir) and names its topics
uniquely, so it never touches a broker or topic of anyone else. Results are repeated measurements,
reported as min / median / max (the machine is shared, so the spread matters as much as the best run).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from pioneer_base.config import KafkaSettings
from pioneer_base.kafka_local import BrokerState, LocalBroker
from streams.topics import TopicSettings, ensure_topics, topic_specs

SIM_START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
"""Simulated start time of the benchmarks' input: fixed, so a seed gives the same bytes every run."""

Records = dict[int, list[tuple[bytes, bytes]]]
"""(key, value) records by partition."""

STREAM = "stderr"  # where pods write their logs (Python logging, Jupyter Server)


def rfc3339(ns: int) -> str:
    """A container runtime's timestamp (UTC, nanoseconds) for the collector's `time` field."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}Z"


@contextlib.contextmanager
def private_broker(heap: str = "1g") -> Iterator[BrokerState]:
    """A fresh single-node Kafka on a free port, stopped (and its data removed) at the end."""
    data_dir = Path(tempfile.mkdtemp(prefix="pt-bench-kafka-"))
    broker = LocalBroker(data_dir)
    try:
        state = broker.start(port=0, heap=heap, timeout_s=120).state
        yield state
    finally:
        broker.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def unique_topics(prefix: str, partitions: int = 8) -> TopicSettings:
    tag = f"bench-{prefix}-{uuid.uuid4().hex[:8]}"
    return TopicSettings(
        raw=f"{tag}.raw",
        events=f"{tag}.events",
        deadletter=f"{tag}.deadletter",
        aggregates=f"{tag}.aggregates",
        partitions=partitions,
    )


def create_topics(bootstrap: str, prefix: str, partitions: int = 8) -> TopicSettings:
    """The pipeline's four topics under fresh names, returned once every partition has a leader."""
    topics = unique_topics(prefix, partitions)

    async def create() -> None:
        specs = topic_specs(topics)
        await ensure_topics(KafkaSettings(bootstrap_servers=bootstrap), specs)
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            for _ in range(100):
                described = await admin.describe_topics([spec.name for spec in specs])
                if all(p["leader"] >= 0 for t in described for p in t["partitions"]):
                    break
                await asyncio.sleep(0.1)
        finally:
            await admin.close()
        for spec in specs:  # answers only once the broker really leads every partition
            await end_offsets(bootstrap, spec.name, spec.partitions)

    asyncio.run(create())
    return topics


def drop_topics_except(bootstrap: str, keep: set[str]) -> list[str]:
    """Delete every topic but `keep` and Kafka's own (`__consumer_offsets`); returns what went.

    A contender's changelogs are compacted by the broker's log cleaner after it has finished: plain
    Faust's come to 1.2 million records a run, and cleaning them took a core from whoever ran next
    (our worker's throughput fell by a third after it, its restarts took a second longer)."""

    async def drop() -> list[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            gone = sorted(t for t in await admin.list_topics() if t not in keep and not t.startswith("__"))
            if gone:
                await admin.delete_topics(gone)
                for _ in range(100):  # until the metadata no longer lists them: the next run starts settled
                    if not set(gone) & set(await admin.list_topics()):
                        break
                    await asyncio.sleep(0.1)
            return gone
        finally:
            await admin.close()

    return asyncio.run(drop())


def collector_producer(bootstrap: str, compression: str = "zstd", linger_ms: int = 50) -> AIOKafkaProducer:
    """A producer configured like the collector's (`collector.service.start_producer`)."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id="pioneer-telemetry-bench",
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
        compression_type=None if compression == "none" else compression,
        max_batch_size=1024 * 1024,
        max_request_size=4 * 1024 * 1024,
    )


async def send_records(producer: AIOKafkaProducer, topic: str, records: Records) -> list[asyncio.Future[Any]]:
    """Hand every record to aiokafka as whole batches (`send_batch`), partitions interleaved; returns
    the acknowledgement futures."""
    batches: dict[int, list[Any]] = {}
    for partition, items in records.items():
        batches[partition] = [producer.create_batch()]
        for key, value in items:
            if batches[partition][-1].append(key=key, value=value, timestamp=None) is None:
                batches[partition].append(producer.create_batch())
                batches[partition][-1].append(key=key, value=value, timestamp=None)
        for batch in batches[partition]:
            batch.close()
    acks = []
    for round_ in range(max((len(b) for b in batches.values()), default=0)):
        for partition, builders in batches.items():
            if round_ < len(builders):
                acks.append(await producer.send_batch(builders[round_], topic, partition=partition))
    return acks


async def produce(bootstrap: str, topic: str, records: Records, compression: str = "zstd") -> None:
    producer = collector_producer(bootstrap, compression)
    await producer.start()
    try:
        await asyncio.gather(*await send_records(producer, topic, records))
    finally:
        await producer.stop()


async def read_topic(bootstrap: str, topic: str, partitions: int) -> Records:
    """Every record of `topic` as it is now, by partition."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        records: Records = {p: [] for p in range(partitions)}
        remaining = sum(end.values())
        while remaining > 0:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for tp, messages in batch.items():
                records[tp.partition] += [(m.key or b"", m.value or b"") for m in messages]
                remaining -= len(messages)
        return records
    finally:
        await consumer.stop()


async def end_offsets(bootstrap: str, topic: str, partitions: int) -> int:
    """Records in `topic` (sum of the partitions' end offsets; the benchmarks' topics start empty)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
        return sum(ends.values())
    finally:
        await consumer.stop()


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- results ------------------------------------------------------------------------------------------


@dataclass
class Metric:
    name: str
    unit: str
    target: str = ""
    values: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        if not self.values:
            return {"unit": self.unit, "target": self.target, "values": []}
        return {
            "unit": self.unit,
            "target": self.target,
            "min": min(self.values),
            "median": statistics.median(self.values),
            "max": max(self.values),
            "values": self.values,
        }


class Results:
    """Named metrics in the order they were first recorded, plus failures."""

    def __init__(self) -> None:
        self.metrics: dict[str, Metric] = {}
        self.failures: list[str] = []

    def add(self, name: str, value: float, unit: str, target: str = "") -> None:
        self.metrics.setdefault(name, Metric(name, unit, target)).values.append(value)

    def fail(self, message: str) -> None:
        print(f"FAILED: {message}", flush=True)
        self.failures.append(message)

    def as_json(self, config: dict[str, Any]) -> str:
        return json.dumps(
            {
                "config": config,
                "ok": not self.failures,
                "failures": self.failures,
                "metrics": {name: metric.summary() for name, metric in self.metrics.items()},
            },
            indent=1,
        )

    def table(self, title: str, notes: list[str]) -> str:
        lines = [
            f"### {title}",
            "",
            "| metric | min | median | max | unit | target |",
            "|---|---:|---:|---:|---|---|",
        ]
        for metric in self.metrics.values():
            s = metric.summary()
            cells = [_number(s[k]) for k in ("min", "median", "max")] if metric.values else ["-"] * 3
            lines.append(f"| {metric.name} | {' | '.join(cells)} | {metric.unit} | {metric.target} |")
        lines += ["", *notes]
        if self.failures:
            lines += ["", *(f"**FAILED**: {failure}" for failure in self.failures)]
        return "\n".join(lines)


def _number(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def load_average() -> str:
    """The 1/5/15 min load averages: other work on the (shared) machine skews wall-clock rates."""
    return " / ".join(f"{load:.1f}" for load in os.getloadavg())
