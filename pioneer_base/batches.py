"""Records packed into ready-built aiokafka batches, for `send_batch`: the collector and the worker
both send this way, since per-record `send` costs more Python time than either can spare."""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder


class BatchPacker:
    """Appends records to batches as they are made, so that each value can be freed right away (while
    still in the CPU cache) instead of waiting in a list for the whole batch."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self.batches: list[BatchBuilder] = []
        self.size = 0  # bytes of the keys and values appended

    def append(self, key: bytes | None, value: bytes | None) -> None:
        self.size += len(key or b"") + len(value or b"")
        if self.batches and self.batches[-1].append(key=key, value=value, timestamp=None) is not None:
            return
        self.batches.append(self.producer.create_batch())
        if self.batches[-1].append(key=key, value=value, timestamp=None) is None:
            raise ValueError(f"a record of {len(value or b'')} bytes exceeds the producer's max_batch_size")

    def close(self) -> list[BatchBuilder]:
        """The batches, closed: ready for `send_batch`, in the order their records were appended."""
        for batch in self.batches:
            batch.close()
        return self.batches


def build_batches(producer: AIOKafkaProducer, records: Iterable[tuple[bytes, bytes]]) -> list[BatchBuilder]:
    """(key, value) records in order, in as many closed batches as the producer's `max_batch_size` needs."""
    packer = BatchPacker(producer)
    for key, value in records:
        packer.append(key, value)
    return packer.close()
