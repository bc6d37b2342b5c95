"""The worker's Prometheus metrics: what the aggregates say, in low cardinality (no user, notebook or
session labels: those stay behind the read API's token), for Nebari's Prometheus and Grafana.

Counters count what this worker process added to its windows (an event counts once, into its day
window; replays a window already holds do not count), so they reset when the worker restarts, as
Prometheus counters do; sum them over the workers. Gauges are read from this worker's state at scrape.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import Counter as PromCounter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from streams.aggregate import COUNTERS, HOUR_MS, MINUTE_MS, empty_window, merge_into, select

if TYPE_CHECKING:
    from streams.local_state import LocalState

ACTIVE_PERIODS = {"1h": HOUR_MS, "24h": 24 * HOUR_MS}  # of the wall clock, up to now


class WorkerMetrics:
    """The registry `/metrics` serves, and the counters the pipeline adds to after each batch."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.events = PromCounter(
            "pioneer_events", "Pioneer events counted into windows", ["event_name", "namespace"],
            registry=self.registry,
        )  # fmt: skip
        self.failures = PromCounter(
            "pioneer_execution_failures", "Cell executions that raised an error", ["namespace"],
            registry=self.registry,
        )  # fmt: skip
        self.revoked = PromCounter(
            "pioneer_revoked_records", "Raw records fetched before their partition went to another worker: skipped",
            registry=self.registry,
        )  # fmt: skip
        self.reread = PromCounter(
            "pioneer_rereads", "Times a partition was fetched again because a record went missing before the agent",
            registry=self.registry,
        )  # fmt: skip
        self.batch_records = Histogram(
            "pioneer_batch_records", "Raw records per agent batch: full batches mean the worker is behind",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000), registry=self.registry,
        )  # fmt: skip
        self.pipeline_counters = {
            name: PromCounter(f"pioneer_{name}", help_text, registry=self.registry)
            for name, help_text in (
                ("late_events", "Events behind their source by more than the grace: in hours and days only"),
                ("backfilled_events", "Events older than the minute windows: in hours and days only"),
                ("expired_events", "Events older than the day windows: in no window"),
                ("duplicate_lines", "Lines the collector delivered twice, counted once"),
                ("dead_letters", "Lines that looked like events but could not be parsed"),
            )
        }

    def add(self, events: Counter[tuple[str, str]], failures: Counter[str], counters: Counter[str]) -> None:
        """One batch's additions: events by (name, namespace), failures by namespace, pipeline counters."""
        for (name, namespace), count in events.items():
            self.events.labels(name, namespace).inc(count)
        for namespace, count in failures.items():
            self.failures.labels(namespace).inc(count)
        for name, count in counters.items():
            self.pipeline_counters[COUNTER_METRICS[name]].inc(count)

    def watch(self, pipeline: LocalState) -> None:
        """Serve the gauges read from the pipeline's state at each scrape."""
        self.registry.register(_StateCollector(pipeline))


COUNTER_METRICS = {
    "late": "late_events",
    "backfilled": "backfilled_events",
    "expired": "expired_events",
    "duplicates": "duplicate_lines",
    "dead_letters": "dead_letters",
}
assert set(COUNTER_METRICS) == set(COUNTERS)


class _StateCollector(Collector):
    def __init__(self, pipeline: LocalState) -> None:
        self.pipeline = pipeline

    def collect(self) -> Iterator[GaugeMetricFamily]:
        pipeline = self.pipeline
        partitions = pipeline.local_partitions()
        lag = GaugeMetricFamily(
            "pioneer_consumer_lag", "Raw-topic records not processed yet", labels=["partition"]
        )
        stream_time = GaugeMetricFamily(
            "pioneer_stream_time_seconds", "Newest event time processed, per partition", labels=["partition"]
        )
        for partition in partitions:
            state = pipeline.partitions.get(partition)
            behind = pipeline.lag(partition)
            if behind is not None:
                lag.add_metric([str(partition)], behind)
            if state is not None and state.stream_time:
                stream_time.add_metric([str(partition)], state.stream_time / 1000)
        yield lag
        yield stream_time
        active = GaugeMetricFamily(
            "pioneer_active_users",
            "Distinct users with events in the last hour or day of the wall clock",
            labels=["namespace", "period"],
        )
        now = int(time.time() * 1000)
        for period, length in ACTIVE_PERIODS.items():
            resolution, size = ("minute", MINUTE_MS) if length <= HOUR_MS else ("hour", HOUR_MS)
            first = (now - length) // size * size + size
            total = empty_window()
            for window in pipeline.local_windows(resolution, range(first, now + 1, size)).values():
                merge_into(total, window)
            for namespace in total["namespaces"]:
                active.add_metric([namespace, period], len(select(total, namespace)["users"]))
        yield active
        last = max((state.last_event_at for state in pipeline.partitions.values()), default=0.0)
        yield GaugeMetricFamily(
            "pioneer_last_event_processed_timestamp_seconds",
            "When this worker last processed an event",
            value=last,
        )
