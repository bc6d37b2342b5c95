"""The parse-only limit: the raw records already in memory (read from the topic before timing starts),
each record and each line decoded with orjson, the four aggregates counted from the decoded dicts.
No Kafka, no validation, no redaction, no `LineParser`: the fastest way to the same numbers in Python.
It reads the log time from the line's leading asctime (the workload's log format) and the user from
the envelope's pod metadata."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from peers.peerlib import EXECUTE, Counts, PeerArgs, Tracker, finish, parse_args
from streams.identity import PodMeta


async def read_records(args: PeerArgs) -> list[tuple[int, int, bytes]]:
    """Every record below the end offsets: (partition, offset, value)."""
    assert args.ends is not None, "the parse-only limit has no live mode"
    consumer = AIOKafkaConsumer(bootstrap_servers=args.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(args.topic, p) for p in range(args.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list[tuple[int, int, bytes]] = []
        remaining = sum(args.ends)
        while remaining > 0:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for tp, messages in batch.items():
                for message in messages:
                    if message.offset < args.ends[tp.partition]:
                        records.append((tp.partition, message.offset, message.value or b""))
                        remaining -= 1
        return records
    finally:
        await consumer.stop()


def count(records: list[tuple[int, int, bytes]], tracker: Tracker) -> Counts:
    counts = Counts()
    minutes: dict[str, int] = {}  # "2026-01-05 09:00" -> epoch ms
    users: dict[str, str] = {}  # pod name -> user
    for partition, offset, value in records:
        decoded: Any = orjson.loads(value)
        batch = decoded if isinstance(decoded, list) else [decoded]
        for envelope in batch:
            line: str = envelope["log"]
            event = orjson.loads(line[line.index("{") :])
            detail = event["eventDetail"]
            name = detail["eventName"]
            state = event.get("notebookState") or {}
            minute = minutes.get(line[:16])
            if minute is None:
                stamp = datetime.strptime(line[:16], "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
                minute = minutes[line[:16]] = int(stamp.timestamp() * 1000)
            kubernetes = envelope["kubernetes"]
            user = users.get(kubernetes["pod_name"])
            if user is None:
                user = users[kubernetes["pod_name"]] = PodMeta.from_fluent_bit(kubernetes).user or ""
            failed, error = False, None
            if name == EXECUTE:
                info = detail["eventInfo"]
                failed = info["success"] is False
                error = (info.get("kernelError") or {}).get("errorName")
            counts.count(minute, name, user, state.get("notebookPath") or "", failed=failed, error=error)
        tracker.record(partition, offset, len(batch))
    return counts


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    records = asyncio.run(read_records(args))
    tracker = Tracker(args.ends)
    tracker.start()
    finish(count(records, tracker).result())


if __name__ == "__main__":
    main()
