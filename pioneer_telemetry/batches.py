"""Records packed into ready-built aiokafka batches, for `send_batch`: the collector and the worker
both send this way, since per-record `send` costs more Python time than either can spare."""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder


def build_batches(producer: AIOKafkaProducer, records: Iterable[tuple[bytes, bytes]]) -> list[BatchBuilder]:
    """(key, value) records in order, in as many closed batches as the producer's `max_batch_size` needs."""
    batches = [producer.create_batch()]
    for key, value in records:
        if batches[-1].append(key=key, value=value, timestamp=None) is None:
            batches.append(producer.create_batch())
            if batches[-1].append(key=key, value=value, timestamp=None) is None:
                raise ValueError(f"a record of {len(value)} bytes exceeds the producer's max_batch_size")
    for batch in batches:
        batch.close()
    return batches
