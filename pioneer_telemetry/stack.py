"""`pioneer-telemetry up`: the whole local stack in one foreground command; Ctrl-C stops what it started.

Kafka (unless `KAFKA_BOOTSTRAP_SERVERS` names a cluster) and the topics first, then each component as
a child process of its own `pioneer-telemetry` subcommand, logging to `<state dir>/stack/<name>.log`:
the worker, the collector tailing the demo log folder, the dashboard, and the simulator writing
realistic pod logs there in real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from pioneer_base.config import ComponentSettings, KafkaSettings, state_dir
from pioneer_base.kafka_local import LocalBroker, LocalKafkaSettings
from streams.topics import TopicChange, TopicSettings, ensure_topics, topic_specs

log = logging.getLogger(__name__)


class StackSettings(ComponentSettings):
    """`PIONEER_STACK_*` or the `stack:` YAML section."""

    section: ClassVar[str] = "stack"
    model_config = SettingsConfigDict(env_prefix="PIONEER_STACK_")

    directory: Path = state_dir() / "stack"  # demo logs, component logs, collector checkpoint
    demo: bool = True  # run the simulator as the log source
    demo_users: int = 12
    worker_port: int = 6066
    dashboard_port: int = 8501


@dataclass
class Child:
    name: str
    command: list[str]
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=Path)


@dataclass(frozen=True)
class StackInfo:
    bootstrap: str
    topics: list[TopicChange]
    started_broker: bool
    children: list[Child]
    api_url: str
    dashboard_url: str


class LocalStack:
    """Starts each piece in order and stops, in reverse, only what it started itself."""

    def __init__(
        self,
        kafka: KafkaSettings,
        local_kafka: LocalKafkaSettings,
        topics: TopicSettings,
        stack: StackSettings,
    ) -> None:
        self.kafka = kafka
        self.local_kafka = local_kafka
        self.topics = topics
        self.settings = stack
        self._broker: LocalBroker | None = None
        self._children: list[Child] = []

    def start(self) -> StackInfo:
        kafka, client_environment = self.kafka, {}
        started_broker = False
        if not self.kafka.external:
            broker = LocalBroker(self.local_kafka.data_dir)
            local = self.local_kafka
            result = broker.start(local.port, local.heap, local.start_timeout_s, local.secure, local.host)
            kafka = broker.client_settings(result.state)
            client_environment = broker.client_environment(result.state)
            if not result.already_running:
                self._broker, started_broker = broker, True
        changes = asyncio.run(ensure_topics(kafka, topic_specs(self.topics)))
        self._start_children(client_environment)
        api_url = f"http://127.0.0.1:{self.settings.worker_port}/api/v1/overview"
        dashboard_url = f"http://127.0.0.1:{self.settings.dashboard_port}"
        return StackInfo(
            kafka.bootstrap_servers, changes, started_broker, list(self._children), api_url, dashboard_url
        )

    def _start_children(self, client_environment: dict[str, str]) -> None:
        """The components, as children with the local broker's client settings in their environment."""
        directory = self.settings.directory
        logs = directory / "demo-logs"
        logs.mkdir(parents=True, exist_ok=True)
        cli = [sys.executable, "-m", "pioneer_telemetry"]
        users = self.settings.demo_users
        children = [
            Child("worker", [*cli, "worker", "--web-port", str(self.settings.worker_port),
                             "--data-dir", str(directory / "worker")]),
            Child("collector", [*cli, "collect", "--path", str(logs / "*.log"), "--start-at", "beginning",
                                "--checkpoint-file", str(directory / "collector-positions.json")]),
            Child("dashboard", [*cli, "dashboard", "--api-url", f"http://127.0.0.1:{self.settings.worker_port}",
                                "--port", str(self.settings.dashboard_port)]),
        ]  # fmt: skip
        if self.settings.demo:
            children.append(
                Child(
                    "simulator",
                    [*cli, "simulate", "--users", str(users), "--realtime", "--out-dir", str(logs)],
                ),
            )
        env = os.environ | client_environment
        for child in children:
            child.log_path = directory / f"{child.name}.log"
            with child.log_path.open("ab") as output:
                child.process = subprocess.Popen(
                    child.command, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
                )
            self._children.append(child)

    def failed(self) -> Child | None:
        """The first piece that died, if any."""
        for child in self._children:
            if child.process is not None and child.process.poll() is not None:
                return child
        return None

    def broker_alive(self) -> bool:
        return self._broker is None or self._broker.state() is not None

    def stop(self) -> None:
        for child in reversed(self._children):
            if child.process is not None and child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        for child in reversed(self._children):
            if child.process is None:
                continue
            try:
                child.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within 30 s; killing it", child.name)
                child.process.kill()
                child.process.wait()
        self._children.clear()
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
            if not stack.broker_alive():
                log.error("the local Kafka broker exited unexpectedly")
                return 1
            if (child := stack.failed()) is not None:
                log.error("%s exited unexpectedly; see %s", child.name, child.log_path)
                with contextlib.suppress(OSError):
                    print(child.log_path.read_text(errors="replace")[-3000:], file=sys.stderr)
                return 1
        return 0
    finally:
        stack.stop()
