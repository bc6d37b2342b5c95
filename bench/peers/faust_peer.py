"""A plain Faust agent, written the way Faust's documentation shows: `async for` over the raw stream, one
record at a time, the shared parser, and one Table per aggregate updated for every event (so every
update is also a changelog record). RocksDB store and at-least-once, as in our worker; table keys start
with the user, so they are co-partitioned with the raw topic (keyed by pod)."""

from __future__ import annotations

import asyncio

import faust

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
from pioneer_base.config import KafkaSettings
from streams.aggregate import MINUTE_MS, event_time, window_start
from streams.topics import TopicSpec, ensure_topics

SEP = "\x1f"  # between the parts of a table key: no user, event name, error or path contains it
TABLES = ("events", "users", "failures", "notebooks")


def create_app(args: PeerArgs, tracker: Tracker) -> faust.App:
    app = faust.App(
        args.group,
        broker=f"kafka://{args.bootstrap}",
        store="rocksdb://",
        datadir=str(args.state_dir),
        topic_partitions=args.partitions,
        consumer_auto_offset_reset="earliest",
        processing_guarantee="at_least_once",
        broker_session_timeout=10.0,  # as our worker: how soon a killed member's partitions move on
        broker_heartbeat_interval=10.0 / 3,
        web_enabled=False,
        autodiscover=False,
    )
    raw = app.topic(
        args.topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    events = app.Table("events", default=int)  # user, minute, event name -> events
    users = app.Table("users", default=int)  # user, minute -> events (distinct users = distinct keys)
    failures = app.Table("failures", default=int)  # user, error name -> failed executions
    notebooks = app.Table("notebooks")  # user, path -> [executions, failures]
    parser = RecordParser(args.topic)

    def result() -> Counts:
        counts = Counts()
        for key, n in events.items():
            _, minute, name = key.split(SEP)
            counts.events[int(minute)][name] += n
            counts.total += n
        for key in users:
            user, minute = key.split(SEP)
            counts.users[int(minute)].add(user)
        for key, n in failures.items():
            counts.failures[key.split(SEP)[1]] += n
        for key, stats in notebooks.items():
            user, path = key.split(SEP)
            counts.notebooks[user, path] = stats
        return counts

    @app.agent(raw)
    async def aggregate(stream: faust.StreamT[bytes]) -> None:
        async for value in stream:
            message = stream.current_event.message
            parsed = parser.parse(value, message.partition, message.offset)
            for event in parsed:
                user = event["user"] or ""
                minute = window_start(event_time(event), MINUTE_MS)
                events[f"{user}{SEP}{minute}{SEP}{event['event_name']}"] += 1
                users[f"{user}{SEP}{minute}"] += 1
                if event["event_name"] == EXECUTE:
                    key = f"{user}{SEP}{event['notebook_path'] or ''}"
                    executions, failed = notebooks.get(key, [0, 0])
                    notebooks[key] = [executions + 1, failed + (event["success"] is False)]
                    if event["success"] is False:
                        failures[f"{user}{SEP}{event['error_name'] or 'unknown'}"] += 1
                    tracker.notebook(event["user"], event["notebook_path"] or "")
            if tracker.record(message.partition, message.offset, len(parsed)):
                finish(result().result())

    return app


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    # created up front, as our worker does: a Faust that creates them itself may read stale metadata
    changelogs = [
        TopicSpec(f"{args.group}-{table}-changelog", args.partitions, 1, {"cleanup.policy": "compact"})
        for table in TABLES
    ]
    asyncio.run(ensure_topics(KafkaSettings(bootstrap_servers=args.bootstrap), changelogs))
    resume = asyncio.run(committed_offsets(args)) if args.ends is not None else None
    tracker = Tracker(args.ends, resume)
    app = create_app(args, tracker)
    tracker.start()  # the Faust worker starts next: its start-up and group join count as "ready -> first record"
    faust.Worker(
        app, loglevel="WARNING", workdir=str(args.state_dir), redirect_stdouts=False, quiet=True
    ).execute_from_commandline()


if __name__ == "__main__":
    main()
