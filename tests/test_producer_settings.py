"""Durability settings every producer and topic gets: acks=all and idempotence for the collector and the
worker's Faust producer; replication 3 with min.insync.replicas 2 where the cluster has the brokers."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

import pytest

from collector import service
from pioneer_base.config import KafkaSettings
from streams.app import create_app
from streams.faust_transport import IdempotentProducer
from streams.topics import TopicSettings, TopicSpec, replicas_for, topic_specs
from streams.worker import WorkerSettings, changelog_specs


@pytest.mark.parametrize(
    ("brokers", "replicas", "min_isr"), [(1, 1, None), (2, 2, None), (3, 3, "2"), (5, 3, "2")]
)
def test_topics_get_as_many_replicas_as_the_cluster_allows_up_to_three(
    brokers: int, replicas: int, min_isr: str | None
) -> None:
    for spec in topic_specs(TopicSettings()) + changelog_specs(WorkerSettings(), TopicSettings()):
        assert spec.replication_factor is None  # auto
        resolved = spec.resolved(brokers)
        assert resolved.replication_factor == replicas
        assert resolved.config.get("min.insync.replicas") == min_isr
        assert spec.config.items() <= resolved.config.items()  # the topic's own config is kept


def test_a_configured_replication_factor_wins() -> None:
    assert replicas_for(5, wanted=2) == 2
    assert TopicSpec("t", 8, 1).resolved(3).replication_factor == 1
    assert "min.insync.replicas" not in TopicSpec("t", 8, 1).resolved(3).config


def test_the_collector_producer_is_idempotent_with_acks_all() -> None:
    source = inspect.getsource(service.start_producer)
    assert 'acks="all"' in source
    assert "enable_idempotence=True" in source


def test_the_worker_faust_producer_is_idempotent_with_acks_all(tmp_path: Path) -> None:
    topics = TopicSettings(replication_factor=3)  # explicit: create_app asks no cluster
    app = create_app(
        WorkerSettings(data_dir=tmp_path), KafkaSettings(bootstrap_servers="127.0.0.1:1"), topics
    )
    assert app.conf.producer_acks == -1
    assert app.conf.topic_replication_factor == 3
    assert app.conf.processing_guarantee.value == "at_least_once"  # no transactions: idempotence is ours
    producer = app.producer
    assert isinstance(producer, IdempotentProducer)
    assert isinstance(app.producer_transport.create_producer(), IdempotentProducer)
    options = {**producer._settings_default(), **producer._settings_extra()}
    assert options["acks"] == "all"
    assert options["enable_idempotence"] is True

    async def made() -> tuple[object, int]:  # what aiokafka makes of them (nothing connects yet)
        aiokafka_producer = producer._new_producer()
        return aiokafka_producer._txn_manager, aiokafka_producer._sender._acks

    txn_manager, acks = asyncio.run(made())
    assert txn_manager is not None  # aiokafka's idempotent producer (producer id and sequence numbers)
    assert acks == -1
