"""The latency runs' input: event lines logged "now", produced at a fixed rate through the collector's own
KafkaSink (so records look exactly as in production), with a marker event every 50 ms.

A marker is a CellExecuteEvent of user `bench-marker` in a notebook of its own; its latency is the time
from handing it to the sink until the contender's aggregates hold that notebook (its result line
arrives, or our worker's API lists it). Marker pods are named `jupyter-bench-marker--<server>` (one
user, named servers) and chosen so that the markers visit every partition in turn.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka.partitioner import DefaultPartitioner
from bench_worker import ASCTIME_CHARS, EVENT_TIME, asctime

from collector.edge import PodFilter
from collector.kafka_sink import KafkaSink
from collector.lines import LogLine, kubernetes_metadata, rfc3339_nano
from collector.service import start_producer
from collector.settings import CollectorSettings
from pioneer_base.config import KafkaSettings
from streams.identity import PodMeta

MARKER_EVERY_S = 0.05
TICK_S = 0.005  # the feed hands lines to the sink every 5 ms
LINGER_S = 0.005  # the sink's linger (the collector's default is 50 ms; it would dominate every latency)
WARMUP_MAX_S = 120.0  # for the contender to join and consume: until its first warm-up marker shows
WARMUP_S = 2.0  # produced after that, before measuring
GIVE_UP_S = 30.0  # markers not seen are lost when no new one showed for this long after producing


@dataclass
class LatencyRun:
    problems: list[str]
    latencies_ms: list[float]
    offered_per_s: float  # events produced per second, markers included
    cpu_per_wall: float  # the contender's CPU seconds per second while producing

    def percentile(self, q: int) -> float:
        values = sorted(self.latencies_ms)
        return (
            statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]
        )


class LiveFeed:
    """Re-stamped copies of real event lines (`pool`: kubernetes metadata and line) and markers."""

    def __init__(self, pool: list[tuple[dict[str, Any], str]], partitions: int) -> None:
        self.pool = pool
        self.templates = itertools.cycle(pool)
        self.offsets: dict[str, int] = {}
        self.sent: dict[str, float] = {}  # every marker handed over, any phase: what readers await
        every = list(range(partitions))
        by_partition: dict[int, str] = {}
        for server in itertools.count():
            pod = f"jupyter-bench-marker--s{server}"
            by_partition.setdefault(DefaultPartitioner()(pod.encode(), every, every), pod)
            if len(by_partition) == partitions:
                break
        self.marker_pods = [
            kubernetes_metadata(PodMeta(pod=pod, namespace="dev", container="notebook"))
            for _, pod in sorted(by_partition.items())
        ]

    def _line(self, log: str, kubernetes: dict[str, Any], now_ns: int) -> LogLine:
        source = f"bench-live/{kubernetes['pod_name']}"
        self.offsets[source] = offset = self.offsets.get(source, -1) + 1
        return LogLine(log, "stderr", rfc3339_nano(now_ns), kubernetes, source, offset)

    def background(self, now_ns: int) -> LogLine:
        kubernetes, text = next(self.templates)
        now_ms = now_ns // 1_000_000
        rest = EVENT_TIME.sub(f'"eventTime": {now_ms - 20}', text[ASCTIME_CHARS:], count=1)
        return self._line(asctime(now_ms) + rest, kubernetes, now_ns)

    def marker(self, path: str, number: int, now_ns: int) -> LogLine:
        template = self.pool[0][1]
        prefix = template[ASCTIME_CHARS : template.index('{"eventDetail"')]
        now_ms = now_ns // 1_000_000
        line = (
            f'{asctime(now_ms)}{prefix}{{"eventDetail": {{"eventName": "CellExecuteEvent", '
            f'"eventTime": {now_ms - 20}, "eventInfo": {{"cells": [{{"id": "marker", "index": 0, '
            f'"type": "code", "metadata": null}}], "success": true, "kernelError": null}}}}, '
            f'"notebookState": {{"sessionID": "{path}", "notebookPath": "{path}", "notebookContent": null}}}}'
        )
        return self._line(line, self.marker_pods[number % len(self.marker_pods)], now_ns)

    async def _produce(
        self,
        sink: KafkaSink,
        rate: float,
        seconds: float,
        tag: str,
        enough: Callable[[dict[str, float]], bool] = lambda sent: False,
    ) -> tuple[dict[str, float], int]:
        """Lines at `rate` for `seconds` (or until `enough(sent markers)`); returns the markers' hand-over
        times and the events produced."""
        sent: dict[str, float] = {}
        acks: list[asyncio.Future[None]] = []
        produced = 0
        started = time.perf_counter()
        next_marker = 0.0
        while (elapsed := time.perf_counter() - started) < seconds and not enough(sent):
            now_ns = time.time_ns()
            lines = [self.background(now_ns) for _ in range(int(elapsed * rate) - produced)]
            produced += len(lines)
            if elapsed >= next_marker:
                path = f"bench/{tag}-{len(sent)}.ipynb"
                lines.append(self.marker(path, len(sent), now_ns))
                next_marker += MARKER_EVERY_S
                sent[path] = self.sent[path] = time.perf_counter()
            acks.append(await sink.submit(lines))
            await asyncio.sleep(TICK_S)
        await asyncio.gather(*acks)
        return sent, produced + len(sent)

    async def run(
        self, bootstrap: str, topic: str, markers: dict[str, float], cpu_s: Callable[[], float],
        *, rate: float, duration_s: float, tag: str,
    ) -> LatencyRun:  # fmt: skip
        """Warm up until the contender shows a marker, then measure for `duration_s`. `markers` is filled
        by the contender's reader (path -> perf_counter when it showed)."""
        settings = CollectorSettings()
        producer = await start_producer(KafkaSettings(bootstrap_servers=bootstrap), settings, asyncio.Event())
        sink = KafkaSink(producer, topic, PodFilter([], "*", []), linger_s=LINGER_S)
        try:
            await sink.start()
            warmup, _ = await self._produce(
                sink, rate, WARMUP_MAX_S, f"{tag}-warmup", lambda sent: any(p in markers for p in sent)
            )
            if not any(path in markers for path in warmup):
                return LatencyRun([f"no marker showed within {WARMUP_MAX_S:.0f} s"], [], 0.0, 0.0)
            await self._produce(sink, rate, WARMUP_S, f"{tag}-warm")
            cpu0, started = cpu_s(), time.perf_counter()
            sent, produced = await self._produce(sink, rate, duration_s, tag)
            seconds = time.perf_counter() - started
            cpu = cpu_s() - cpu0
            await sink.flush()
        finally:
            await sink.close()
            await producer.stop()
        last_seen, count = time.perf_counter(), 0
        while len([p for p in sent if p in markers]) < len(sent):
            if (seen := len([p for p in sent if p in markers])) > count:
                last_seen, count = time.perf_counter(), seen
            if time.perf_counter() - last_seen > GIVE_UP_S:
                break
            await asyncio.sleep(0.05)
        latencies = [(markers[p] - sent[p]) * 1000 for p in sent if p in markers]
        lost = len(sent) - len(latencies)
        problems = [f"{lost} of {len(sent)} markers never showed"] if lost else []
        return LatencyRun(problems, latencies, produced / seconds, cpu / seconds)
