"""Shared fixtures: one real Kafka broker per test session, on a free port in a temp dir."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from pioneer_telemetry.kafka_local import LocalBroker
from streams.topics import TopicSettings, ensure_topics, topic_specs
from tests.helpers import unique_topics


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of a real single-node Kafka started for this test session."""
    broker = LocalBroker(tmp_path_factory.mktemp("kafka"))
    result = broker.start(port=0, heap="512m", timeout_s=120)
    try:
        yield result.state.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def topics(kafka_broker: str) -> TopicSettings:
    """A fresh set of the pipeline's topics (unique names) on the session broker."""
    settings = unique_topics(f"t{uuid.uuid4().hex[:8]}")
    asyncio.run(ensure_topics(kafka_broker, topic_specs(settings)))
    return settings
