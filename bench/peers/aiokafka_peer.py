"""The practical ceiling for Python on this broker: one aiokafka consumer (`getmany`), the shared parser,
and dict counting, nothing else. No consumer group, no state store, no fault tolerance: it reads every
partition from the beginning, so after a restart it reads the whole topic again."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition

from peers.peerlib import EXECUTE, Counts, PeerArgs, RecordParser, Tracker, finish, parse_args


async def consume(args: PeerArgs) -> Counts:
    consumer = AIOKafkaConsumer(bootstrap_servers=args.bootstrap, enable_auto_commit=False)
    await consumer.start()
    partitions = [TopicPartition(args.topic, p) for p in range(args.partitions)]
    consumer.assign(partitions)
    try:
        await consumer.seek_to_beginning(*partitions)
        parser, counts, tracker = RecordParser(args.topic), Counts(), Tracker(args.ends)
        tracker.start()
        while not tracker.caught_up:
            batch = await consumer.getmany(timeout_ms=100, max_records=5000)
            for tp, messages in batch.items():
                for message in messages:
                    events = parser.parse(message.value or b"", tp.partition, message.offset)
                    for event in events:
                        counts.add(event)
                        if event["event_name"] == EXECUTE:
                            tracker.notebook(event["user"], event["notebook_path"] or "")
                    tracker.record(tp.partition, message.offset, len(events))
    finally:
        await consumer.stop()
    return counts


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    finish(asyncio.run(consume(args)).result())


if __name__ == "__main__":
    main()
