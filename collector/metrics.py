"""Prometheus metrics an operator watches on a collector, and the periodic one-line status."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import REGISTRY, Counter, Gauge


@dataclass(frozen=True)
class CollectorMetrics:
    lines_received: Counter
    lines_filtered: Counter
    lines_acked: Counter
    send_retries: Counter
    buffered_bytes: Gauge
    files_tailed: Gauge

    def status_line(self) -> str:
        def value(name: str) -> float:
            return REGISTRY.get_sample_value(name) or 0.0

        return (
            f"lines received={value('pioneer_collector_lines_received_total'):.0f} "
            f"filtered={value('pioneer_collector_lines_filtered_total'):.0f} "
            f"acked={value('pioneer_collector_lines_acked_total'):.0f} "
            f"buffered_bytes={value('pioneer_collector_buffered_bytes'):.0f} "
            f"files={value('pioneer_collector_files_tailed'):.0f} "
            f"retries={value('pioneer_collector_send_retries_total'):.0f}"
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
