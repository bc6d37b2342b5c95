"""The collector process: sources -> KafkaSink, with status lines, metrics and a clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from prometheus_client import start_http_server

from collector.checkpoint import CheckpointStore
from collector.edge import PodFilter
from collector.forward import ForwardAuth, ForwardServer
from collector.kafka_sink import KafkaSink
from collector.lines import kubernetes_metadata
from collector.metrics import COLLECTOR_METRICS as METRICS
from collector.settings import CollectorSettings
from collector.stdin import collect_stream
from collector.tail import FileTailer
from pioneer_base.config import KafkaSettings
from pioneer_base.kafka_access import check_access
from streams.identity import PodMeta
from streams.topics import TopicSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StdinSource:
    """Where piped-in lines came from (kubectl logs knows no file name)."""

    pod: str
    namespace: str | None = None
    container: str | None = None


async def start_producer(
    kafka: KafkaSettings, settings: CollectorSettings, stop: asyncio.Event
) -> AIOKafkaProducer:
    """An idempotent, acks=all producer; waits (and says so) while the broker is not reachable yet, and
    stops at once (`KafkaAccessDenied`) when it refuses us."""
    backoff = 1.0
    while True:
        await check_access(kafka)
        producer = AIOKafkaProducer(
            **kafka.client_options(),
            client_id=f"{kafka.client_id}-collector",
            acks="all",
            enable_idempotence=True,
            linger_ms=settings.linger_ms,
            compression_type=None if settings.compression == "none" else settings.compression,
            max_batch_size=max(2 * settings.batch_bytes, 1024 * 1024),
            max_request_size=4 * 1024 * 1024,
        )
        try:
            await producer.start()
            return producer
        except KafkaConnectionError as error:
            await producer.stop()
            if stop.is_set():
                raise
            log.warning(
                "Kafka at %s not reachable (%s); retrying in %.0f s", kafka.bootstrap_servers, error, backoff
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)
            backoff = min(backoff * 2, 30.0)


def forward_auth(settings: CollectorSettings) -> ForwardAuth | None:
    if settings.forward_shared_key is None:
        return None
    users = {}
    if settings.forward_username is not None and settings.forward_password is not None:
        users[settings.forward_username] = settings.forward_password.get_secret_value()
    return ForwardAuth(settings.forward_shared_key.get_secret_value(), settings.forward_hostname, users)


async def run_collector(
    settings: CollectorSettings,
    kafka: KafkaSettings,
    topics: TopicSettings,
    stop: asyncio.Event,
    stdin: StdinSource | None = None,
) -> None:
    """Run every configured source until `stop` is set (or stdin ends), then flush and checkpoint."""
    if not settings.paths and settings.forward_port is None and stdin is None:
        raise ValueError("nothing to collect: give --path, --forward-port or --stdin")
    if settings.metrics_port is not None:
        start_http_server(settings.metrics_port, addr=settings.metrics_host)
    pod_filter = PodFilter(settings.namespaces, settings.pod_glob, settings.containers)
    producer = await start_producer(kafka, settings, stop)
    sink = KafkaSink(
        producer,
        topics.raw,
        pod_filter,
        forward_all=settings.forward_all,
        batch_bytes=settings.batch_bytes,
        record_lines=settings.record_lines,
        linger_s=settings.linger_ms / 1000,
        buffer_bytes=settings.buffer_bytes,
    )
    await sink.start()
    status = asyncio.create_task(_report_status(settings.status_interval_s), name="status")
    sources: list[asyncio.Task[None]] = []
    forward: ForwardServer | None = None
    try:
        if settings.paths:
            tailer = FileTailer(
                settings.paths,
                sink,
                CheckpointStore(settings.checkpoint_file),
                pod_filter,
                start_at=settings.start_at,
                poll_interval_s=settings.poll_interval_s,
                rotate_wait_s=settings.rotate_wait_s,
                max_line_bytes=settings.max_line_bytes,
            )
            sources.append(asyncio.create_task(tailer.run(stop), name="files"))
        if settings.forward_port is not None:
            forward = ForwardServer(
                sink,
                host=settings.forward_bind_host,
                port=settings.forward_port,
                auth=forward_auth(settings),
                tls=settings.forward_tls(),
                max_connections=settings.forward_max_connections,
                idle_timeout_s=settings.forward_idle_timeout_s,
            )
            if forward.auth is None:
                log.warning(
                    "forward input without a shared key (PIONEER_COLLECTOR_FORWARD_SHARED_KEY): "
                    "listening on 127.0.0.1 only"
                )
            await forward.start()
        if stdin is not None:
            meta = PodMeta(pod=stdin.pod, namespace=stdin.namespace, container=stdin.container)
            read = await collect_stream(
                sys.stdin.buffer,
                sink,
                kubernetes_metadata(meta),
                f"stdin:{stdin.pod}",
                settings.max_line_bytes,
            )
            log.info("stdin ended after %d bytes", read)
            if not settings.paths and forward is None:
                stop.set()
        await stop.wait()
    finally:
        stop.set()
        if forward is not None:
            await forward.close()
        # the tailer flushes and writes its final checkpoint; a failed source must not skip the rest
        for result in await asyncio.gather(*sources, return_exceptions=True):
            if isinstance(result, BaseException):
                log.error("a source failed: %r", result)
        status.cancel()
        await sink.close()
        await producer.stop()
        log.info("collector stopped: %s", METRICS.status_line())


async def _report_status(interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        log.info("status: %s", METRICS.status_line())
