"""`pioneer-telemetry up`: the whole local stack in one foreground command; Ctrl-C stops what it started."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from dataclasses import dataclass

from pioneer_telemetry.config import KafkaSettings
from pioneer_telemetry.kafka_local import LocalBroker, LocalKafkaSettings
from streams.topics import TopicChange, TopicSettings, ensure_topics, topic_specs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StackInfo:
    bootstrap: str
    topics: list[TopicChange]
    started_broker: bool


class LocalStack:
    """Starts each piece in order and stops, in reverse, only what it started itself."""

    def __init__(self, kafka: KafkaSettings, local_kafka: LocalKafkaSettings, topics: TopicSettings) -> None:
        self.kafka = kafka
        self.local_kafka = local_kafka
        self.topics = topics
        self._broker: LocalBroker | None = None

    def start(self) -> StackInfo:
        bootstrap = self.kafka.bootstrap_servers
        started_broker = False
        if not self.kafka.external:
            broker = LocalBroker(self.local_kafka.data_dir)
            result = broker.start(
                self.local_kafka.port, self.local_kafka.heap, self.local_kafka.start_timeout_s
            )
            bootstrap = result.state.bootstrap
            if not result.already_running:
                self._broker, started_broker = broker, True
        changes = asyncio.run(ensure_topics(bootstrap, topic_specs(self.topics)))
        return StackInfo(bootstrap, changes, started_broker)

    def healthy(self) -> bool:
        return self._broker is None or self._broker.state() is not None

    def stop(self) -> None:
        if self._broker is not None:
            log.info("stopping the Kafka broker this stack started")
            self._broker.stop()
            self._broker = None


def stop_on_signals() -> threading.Event:
    """Turn SIGINT/SIGTERM into an event, installed before anything starts so no signal is lost."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def run_until_interrupted(stack: LocalStack, stop: threading.Event, poll_s: float = 1.0) -> int:
    """Block until `stop` is set (exit 0) or until a piece dies (exit 1); always stop what was started."""
    try:
        while not stop.wait(poll_s):
            if not stack.healthy():
                log.error("the local Kafka broker exited unexpectedly")
                return 1
        return 0
    finally:
        stack.stop()
