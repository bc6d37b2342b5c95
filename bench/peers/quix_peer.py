"""Quix Streams with its tumbling-window API: raw records expanded into the shared parser's events, event
time set from each event's log time, one-minute tumbling windows (grace 60 s, as our worker's) reducing
the four aggregates together, and every window update (`.current()`, so the results are live) written to
a results topic, the way a Quix app makes its windows readable. Windows are per message key (the pod),
so the result is the latest value of every (pod, minute) window, summed over pods."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from quixstreams import Application, message_context
from quixstreams.models import TopicConfig

from peers.peerlib import (
    EXECUTE,
    Counts,
    PeerArgs,
    RecordParser,
    Tracker,
    committed_offsets,
    finish,
    parse_args,
)
from streams.aggregate import MINUTE_MS, event_time
from streams.schema import PioneerEvent

GRACE_MS = 60_000
SEP = "\x1f"  # between user and path in a notebook key
MARKER_PODS = b"jupyter-bench-marker"

Window = dict[
    str, Any
]  # {"events": {name: n}, "users": [user], "errors": {name: n}, "notebooks": {key: [e, f]}}


def add(window: Window, event: PioneerEvent) -> Window:
    name, user = event["event_name"], event["user"] or ""
    window["events"][name] = window["events"].get(name, 0) + 1
    if user not in window["users"]:
        window["users"].append(user)
    if name == EXECUTE:
        stats = window["notebooks"].setdefault(f"{user}{SEP}{event['notebook_path'] or ''}", [0, 0])
        stats[0] += 1
        if event["success"] is False:
            stats[1] += 1
            error = event["error_name"] or "unknown"
            window["errors"][error] = window["errors"].get(error, 0) + 1
    return window


def first(event: PioneerEvent) -> Window:
    return add({"events": {}, "users": [], "errors": {}, "notebooks": {}}, event)


def create_app(args: PeerArgs, tracker: Tracker) -> Application:
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=str(args.state_dir),
        loglevel="WARNING",
        # as our worker: how soon a killed member's partitions move on (librdkafka's default is 45 s)
        consumer_extra_config={"session.timeout.ms": 10_000, "heartbeat.interval.ms": 3_333},
    )
    raw = app.topic(args.topic, key_deserializer="bytes", value_deserializer="bytes")
    results = app.topic(
        f"{args.group}-windows",
        key_serializer="bytes",
        value_serializer="json",
        # kept for good: its records carry the windows' event times, months old, and the broker's 7-day
        # retention check (every 5 min) deleted the read-back's records under it, in about 1 run in 10
        config=TopicConfig(
            num_partitions=args.partitions, replication_factor=1, extra_config={"retention.ms": "-1"}
        ),
    )
    parser = RecordParser(args.topic)
    left = [0]  # events of the current record not yet out of the window (Quix runs them one by one)

    def parse(value: bytes) -> list[PioneerEvent]:
        context = message_context()
        events = parser.parse(value, context.partition, context.offset)
        left[0] = len(events)
        if not events and tracker.record(context.partition, context.offset, 0):
            app.stop()
        return events

    def collect(window: dict[str, Any], key: bytes, timestamp: int, headers: Any) -> None:
        if key.startswith(MARKER_PODS):
            for notebook in window["value"]["notebooks"]:
                user, path = notebook.split(SEP)
                tracker.notebook(user, path)
        context = message_context()
        left[0] -= 1
        if tracker.record(context.partition, context.offset, 1, whole=left[0] == 0):
            app.stop()

    sdf = app.dataframe(raw)
    sdf = sdf.apply(parse, expand=True)
    sdf = sdf.set_timestamp(lambda event, key, timestamp, headers: event_time(event))
    sdf = sdf.tumbling_window(duration_ms=MINUTE_MS, grace_ms=GRACE_MS).reduce(add, first).current()
    sdf = sdf.update(collect, metadata=True)
    sdf.to_topic(results)
    return app


async def read_windows(args: PeerArgs) -> Counts:
    """The latest value of every (pod, window) in the results topic, summed into the aggregates."""
    consumer = AIOKafkaConsumer(bootstrap_servers=args.bootstrap, enable_auto_commit=False)
    await consumer.start()
    latest: dict[tuple[bytes, int], Window] = {}
    try:
        partitions = [TopicPartition(f"{args.group}-windows", p) for p in range(args.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        # by position, not by counting records: offsets a record does not fill (a transaction marker,
        # say) would leave a count short forever
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            for messages in (await consumer.getmany(timeout_ms=1000, max_records=10_000)).values():
                for message in messages:
                    update = orjson.loads(message.value or b"")
                    latest[message.key or b"", update["start"]] = update["value"]
    finally:
        await consumer.stop()
    counts = Counts()
    for (_, minute), window in latest.items():
        for name, n in window["events"].items():
            counts.events[minute][name] += n
            counts.total += n
        counts.users[minute].update(window["users"])
        counts.failures.update(window["errors"])
        for notebook, (executions, failures) in window["notebooks"].items():
            user, path = notebook.split(SEP)
            stats = counts.notebooks[user, path]
            stats[0] += executions
            stats[1] += failures
    return counts


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    resume = asyncio.run(committed_offsets(args)) if args.ends is not None else None
    tracker = Tracker(args.ends, resume)
    app = create_app(args, tracker)
    tracker.start()
    if not tracker.caught_up:
        app.run()  # until caught up (live mode: until killed)
    finish(asyncio.run(read_windows(args)).result())


if __name__ == "__main__":
    main()
