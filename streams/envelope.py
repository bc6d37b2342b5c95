"""What a raw-topic record holds: log lines in Fluent Bit's kafka-output shape.

A record is one envelope (`log`, `stream`, `time`, `kubernetes`, and from our collector `source`),
as Fluent Bit's kafka output writes it, or a JSON array of such envelopes, as our collector writes
them: consecutive lines of one source, in order, so that Kafka and every consumer pay their
per-message cost once per batch of lines instead of once per line. A record that is not JSON is
taken as one bare log line (a `kcat -P` of a log file, say).
"""

from __future__ import annotations

from typing import Any

import orjson

from streams.identity import PodMeta

Envelope = dict[str, Any]


def envelopes(value: bytes | str) -> list[Envelope]:
    """The envelopes of one raw record; anything that is not an envelope becomes a bare `log`, which
    the parser then skips or dead-letters with its reason."""
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError:
        return [{"log": value}]
    if isinstance(decoded, dict):
        return [decoded]
    if isinstance(decoded, list):
        return [item if isinstance(item, dict) else {"log": orjson.dumps(item)} for item in decoded]
    return [{"log": value}]


class EnvelopeReader:
    """What `LineParser.parse` needs from an envelope: the line, its source position (without `source`,
    as from Fluent Bit, the Kafka position stands in), the pod, the runtime's time. Pod metadata is
    built once per pod: every line carries it."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._pods: dict[tuple[Any, ...], PodMeta] = {}
        self._kubernetes_before: Any = None
        self._pod_before = PodMeta()

    def read(
        self, envelope: Envelope, partition: int, kafka_offset: int
    ) -> tuple[str | bytes, str, int, PodMeta, str | None]:
        line = envelope.get("log")
        if not isinstance(line, (str, bytes)):
            line = "" if line is None else str(line)
        source = envelope.get("source")
        source_id, source_offset = None, kafka_offset
        if isinstance(source, dict):
            source_id = source.get("id")
            offset = source.get("offset")
            source_offset = offset if isinstance(offset, int) else source_offset
        source_id = str(source_id) if source_id else f"kafka:{self.topic}:{partition}"
        kubernetes = envelope.get("kubernetes")
        if kubernetes != self._kubernetes_before:  # a record's lines mostly share it: compare, not look up
            self._kubernetes_before = kubernetes
            self._pod_before = self._pod(kubernetes) if isinstance(kubernetes, dict) else PodMeta()
        pod = self._pod_before
        runtime_time = envelope.get("time")
        return line, source_id, source_offset, pod, runtime_time if isinstance(runtime_time, str) else None

    def _pod(self, kubernetes: dict[str, Any]) -> PodMeta:
        annotations, labels = kubernetes.get("annotations") or {}, kubernetes.get("labels") or {}
        cache_key = (
            kubernetes.get("pod_name"),
            kubernetes.get("namespace_name"),
            kubernetes.get("container_name"),
            annotations.get("hub.jupyter.org/username") if isinstance(annotations, dict) else None,
            labels.get("hub.jupyter.org/username") if isinstance(labels, dict) else None,
        )
        pod = self._pods.get(cache_key)
        if pod is None:
            if len(self._pods) > 10_000:
                self._pods.clear()
            pod = self._pods[cache_key] = PodMeta.from_fluent_bit(kubernetes)
        return pod
