"""Shared fixtures: one real Kafka broker per test session, on a free port in a temp dir."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pioneer_telemetry.kafka_local import LocalBroker


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of a real single-node Kafka started for this test session."""
    broker = LocalBroker(tmp_path_factory.mktemp("kafka"))
    result = broker.start(port=0, heap="512m", timeout_s=120)
    try:
        yield result.state.bootstrap
    finally:
        broker.stop()
