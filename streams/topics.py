"""The project's Kafka topics: names, partition counts and configs, in one place."""

from __future__ import annotations

import asyncio
import concurrent.futures
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic_settings import SettingsConfigDict

from pioneer_base.config import ComponentSettings, KafkaSettings
from pioneer_base.kafka_access import check_access

DAY_MS = 24 * 3600 * 1000


class TopicSettings(ComponentSettings):
    """Topic names and sizing; `PIONEER_TOPICS_*` or the `topics:` YAML section."""

    section: ClassVar[str] = "topics"
    model_config = SettingsConfigDict(env_prefix="PIONEER_TOPICS_")

    raw: str = "pioneer.raw"
    events: str = "pioneer.events"
    deadletter: str = "pioneer.deadletter"
    aggregates: str = "pioneer.aggregates"
    partitions: int = 8
    replication_factor: int | None = None  # None: as many as the cluster allows, up to 3 (`replicas_for`)
    raw_retention_days: int = 7


MAX_REPLICAS = 3
MIN_INSYNC_REPLICAS = 2


def replicas_for(brokers: int, wanted: int | None = None) -> int:
    """The replication factor of a topic: `wanted`, or as many copies as the cluster allows, up to 3."""
    return wanted if wanted is not None else max(1, min(MAX_REPLICAS, brokers))


def durability_config(replicas: int) -> dict[str, str]:
    """With 3 copies, a write (acks=all) must reach 2 of them: one broker can be down without stopping
    producers, and an acknowledged record survives losing any one broker."""
    return {"min.insync.replicas": str(MIN_INSYNC_REPLICAS)} if replicas >= MAX_REPLICAS else {}


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int | None  # None: replicas_for(the cluster's brokers)
    config: dict[str, str] = field(default_factory=dict)

    def resolved(self, brokers: int) -> TopicSpec:
        """This spec on a cluster of `brokers`: its replication factor and min.insync.replicas decided."""
        replicas = replicas_for(brokers, self.replication_factor)
        return TopicSpec(self.name, self.partitions, replicas, durability_config(replicas) | self.config)


def topic_specs(settings: TopicSettings | None = None) -> list[TopicSpec]:
    """Every topic the pipeline needs. Raw lines, events and dead letters expire; aggregates are compacted."""
    s = settings or TopicSettings()
    retention = {"retention.ms": str(s.raw_retention_days * DAY_MS)}
    return [
        TopicSpec(s.raw, s.partitions, s.replication_factor, dict(retention)),
        TopicSpec(s.events, s.partitions, s.replication_factor, dict(retention)),
        TopicSpec(s.deadletter, s.partitions, s.replication_factor, {"retention.ms": str(30 * DAY_MS)}),
        TopicSpec(s.aggregates, s.partitions, s.replication_factor, {"cleanup.policy": "compact"}),
    ]


@dataclass(frozen=True)
class TopicChange:
    name: str
    action: str  # "created", "grown" (partitions added) or "ok"
    partitions: int


async def ensure_topics(kafka: KafkaSettings, specs: list[TopicSpec]) -> list[TopicChange]:
    """Create missing topics and grow ones with too few partitions; idempotent, safe on every start."""
    from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic  # noqa: PLC0415

    await check_access(kafka)
    admin = AIOKafkaAdminClient(**kafka.client_options(), client_id=f"{kafka.client_id}-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        brokers = len((await admin.describe_cluster())["brokers"])
        missing = [spec.resolved(brokers) for spec in specs if spec.name not in existing]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=s.config)
                    for s in missing
                ]
            )
            errors = [(name, code) for name, code, *_ in response.topic_errors if code not in (0, 36)]
            if errors:  # 36 = TOPIC_ALREADY_EXISTS (another starter won the race)
                raise RuntimeError(f"creating topics failed: {errors}")
        changes = [TopicChange(s.name, "created", s.partitions) for s in missing]
        present = [spec for spec in specs if spec.name in existing]
        if present:
            described = {
                t["topic"]: len(t["partitions"])
                for t in await admin.describe_topics([s.name for s in present])
            }
            grow = {s.name: NewPartitions(s.partitions) for s in present if described[s.name] < s.partitions}
            if grow:
                response = await admin.create_partitions(grow)
                errors = [(name, code) for name, code, *_ in response.topic_errors if code != 0]
                if errors:
                    raise RuntimeError(f"adding partitions failed: {errors}")
            changes += [
                TopicChange(s.name, "grown" if s.name in grow else "ok", max(s.partitions, described[s.name]))
                for s in present
            ]
        await _wait_until_visible(admin, {c.name: c.partitions for c in changes if c.action != "ok"})
        return changes
    finally:
        await admin.close()


async def _wait_until_visible(admin: Any, expected: dict[str, int], timeout_s: float = 30.0) -> None:
    """Metadata spreads asynchronously; return only once every topic shows its partitions to clients."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while expected:
        described = await admin.describe_topics(list(expected))
        ready = {
            t["topic"]
            for t in described
            if t["error_code"] == 0 and len(t["partitions"]) >= expected[t["topic"]]
        }
        expected = {name: count for name, count in expected.items() if name not in ready}
        if expected and asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"topics not visible after {timeout_s:.0f} s: {sorted(expected)}")
        if expected:
            await asyncio.sleep(0.1)


async def cluster_brokers(kafka: KafkaSettings) -> int:
    """How many brokers the cluster has now."""
    from aiokafka.admin import AIOKafkaAdminClient  # noqa: PLC0415

    admin = AIOKafkaAdminClient(**kafka.client_options(), client_id=f"{kafka.client_id}-admin")
    await admin.start()
    try:
        return len((await admin.describe_cluster())["brokers"])
    finally:
        await admin.close()


def replication_factor(kafka: KafkaSettings, topics: TopicSettings) -> int:
    """The configured replication factor, or (None) the one `ensure_topics` gives this cluster's topics.
    Synchronous, for set-up code (the Faust app's own topics); safe inside a running event loop."""
    if topics.replication_factor is not None:
        return topics.replication_factor
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return replicas_for(pool.submit(asyncio.run, cluster_brokers(kafka)).result())
