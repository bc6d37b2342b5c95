"""Prometheus metrics an operator watches on a collector, and the periodic one-line status."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Gauge


@dataclass(frozen=True)
class CollectorMetrics:
    lines_received: Counter
    lines_filtered: Counter
    lines_acked: Counter
    send_retries: Counter
    buffered_bytes: Gauge
    files_tailed: Gauge

    def status_line(self) -> str:
        return (
            f"lines received={value(self.lines_received):.0f} "
            f"filtered={value(self.lines_filtered):.0f} "
            f"acked={value(self.lines_acked):.0f} "
            f"buffered_bytes={value(self.buffered_bytes):.0f} "
            f"files={value(self.files_tailed):.0f} "
            f"retries={value(self.send_retries):.0f}"
        )


def value(metric: Counter | Gauge) -> float:
    """One metric's current value, without collecting the whole registry (whose process metrics read
    /proc: too costly for a caller that polls, such as the benchmark)."""
    return sum(
        sample.value
        for family in metric.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    )


COLLECTOR_METRICS = CollectorMetrics(
    lines_received=Counter("pioneer_collector_lines_received", "Logical lines read from all sources"),
    lines_filtered=Counter(
        "pioneer_collector_lines_filtered", "Lines not forwarded (not pioneer, or pod filter)"
    ),
    lines_acked=Counter("pioneer_collector_lines_acked", "Lines acknowledged by Kafka"),
    send_retries=Counter(
        "pioneer_collector_send_retries", "Batches sent again after Kafka did not acknowledge"
    ),
    buffered_bytes=Gauge("pioneer_collector_buffered_bytes", "Bytes sent to Kafka and not yet acknowledged"),
    files_tailed=Gauge("pioneer_collector_files_tailed", "Files currently followed"),
)
