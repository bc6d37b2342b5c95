"""Storage of a year, per 1,000 users: RocksDB and changelog bytes, and how long a restore takes.

A week of simulated users (`--users`, office hours, `--sessions-per-week` working blocks each) goes through
a fresh local Kafka and one worker. Then the worker stops, its tables are read back (RocksDB, read-only)
and measured per table: windows, bytes of their values, bytes on disk; the changelog topics are measured on
the broker's disk; and a second worker with an empty data dir restores every table from the changelogs,
timed until its API answers with every event again.

The year is extrapolated from the week, assuming what the tables hold grows with the number of active
users (their users, sessions and notebooks entries do) and that every week looks like this one:
minute windows are kept one day, hour windows 35 days, day windows the whole year (365 of the 400 days).
The compacted changelog of a year is estimated as its live values compressed with zstd (the worker's
producer compression), since a short run never sees Kafka's log cleaner finish. The restore of a year is
measured, not extrapolated: changelogs of the estimated size (as many windows, each value a real one of
the run repeated to the estimated size) are written to Kafka, and a third worker restores them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import cramjam
from aiokafka import AIOKafkaProducer
from rocksdict import AccessType, Rdict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_worker import Worker
from benchlib import create_topics

from pioneer_base.config import KafkaSettings
from pioneer_base.kafka_local import LocalBroker
from streams.topics import TopicSpec, ensure_topics
from streams.worker import CHANGELOG_CONFIG

DAY_S = 86_400
KEPT_DAYS = {"minutes": 1, "hours": 35, "days": 365}  # of a year's steady state
WINDOW_TABLES = tuple(KEPT_DAYS)


def simulate(bootstrap: str, raw_topic: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """The simulator's users, straight into the raw topic through the collector's Kafka path."""
    users, days, sessions = args.users, args.days, args.sessions_per_week
    start = time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime(time.time() - (days + 1) * DAY_S))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIONEER_")} | {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PIONEER_TOPICS_RAW": raw_topic,
    }  # fmt: skip
    truth = out / "truth.json"
    subprocess.run(
        [sys.executable, "-m", "pioneer_telemetry", "simulate", "--users", str(users), "--start", start,
         "--duration", str(days * DAY_S), "--office-hours", "--sessions-per-week", str(sessions),
         "--kafka", "--truth", str(truth)],
        env=env, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return json.loads(truth.read_text())


def table_sizes(data_dir: Path) -> dict[str, dict[str, float]]:
    """Per table: windows (keys), bytes of their values, bytes of their RocksDB files on disk."""
    sizes: dict[str, dict[str, float]] = {}
    for table in (*WINDOW_TABLES, "sources"):
        keys = value_bytes = disk = 0
        compressed = 0
        for db in data_dir.rglob(f"{table}-*.db"):
            disk += sum(f.stat().st_size for f in db.rglob("*") if f.is_file())
            store = Rdict(str(db), access_type=AccessType.read_only())
            try:
                chunk: list[bytes] = []
                for key, value in store.items():
                    keys += 1
                    value_bytes += len(key) + len(value)
                    chunk.append(value)
                    if len(chunk) == 200:
                        compressed += len(cramjam.zstd.compress(b"".join(chunk)))
                        chunk = []
                if chunk:
                    compressed += len(cramjam.zstd.compress(b"".join(chunk)))
            finally:
                store.close()
        sizes[table] = {
            "windows": keys,
            "value_bytes": value_bytes,
            "disk_bytes": disk,
            "zstd_bytes": compressed,
        }
    return sizes


def changelog_bytes(broker_data: Path, app_id: str) -> dict[str, int]:
    """Bytes on the broker's disk of each table's changelog topic (every partition)."""
    return {
        table: sum(
            f.stat().st_size
            for d in broker_data.glob(f"{app_id}-{table}-changelog-*")
            for f in d.iterdir()
            if f.suffix == ".log"
        )
        for table in (*WINDOW_TABLES, "sources")
    }


def sample_values(data_dir: Path, table: str, limit: int = 50) -> list[bytes]:
    """Some of a table's stored values: the material of the synthetic year."""
    values: list[bytes] = []
    for db in data_dir.rglob(f"{table}-*.db"):
        store = Rdict(str(db), access_type=AccessType.read_only())
        try:
            values += [value for _, value in zip(range(limit), store.values(), strict=False)]
        finally:
            store.close()
    return values


async def fill_changelogs(
    bootstrap: str, app_id: str, partitions: int, year: dict[str, Any], samples: dict[str, list[bytes]]
) -> int:
    """A year's tables for 1,000 users, as their changelogs would hold them after compaction: as many
    windows as estimated, each value a real one of the run repeated to the estimated size."""
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    specs = [
        TopicSpec(f"{app_id}-{t}-changelog", partitions, 1, dict(CHANGELOG_CONFIG))
        for t in (*WINDOW_TABLES, "sources")
    ]
    await ensure_topics(kafka, specs)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, compression_type="zstd", linger_ms=50,
                                max_batch_size=1024 * 1024, max_request_size=8 * 1024 * 1024)  # fmt: skip
    await producer.start()
    written = 0
    try:
        for table, estimate in year.items():
            size = int(estimate["value_bytes"] / max(estimate["windows"], 1))
            for n in range(round(estimate["windows"])):
                sample = samples[table][n % len(samples[table])]
                value = (sample * (size // len(sample) + 1))[:size]
                partition = n % partitions
                key = f"{partition}|{n}".encode()
                await producer.send(f"{app_id}-{table}-changelog", value, key=key, partition=partition)
                written += len(value)
        await producer.flush()
    finally:
        await producer.stop()
    return written


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """One run: the week through a worker, its tables and changelogs measured, a restore timed."""
    work = Path(tempfile.mkdtemp(prefix="pt-bench-storage-"))
    broker = LocalBroker(work / "kafka")
    try:
        state = broker.start(port=0, heap="1g", timeout_s=120).state
        topics = create_topics(state.bootstrap, "storage")
        print(f"simulating {args.users} users for {args.days} days ...", file=sys.stderr)
        truth = simulate(state.bootstrap, topics.raw, args, work)
        now_ms = int(time.time() * 1000)
        span = {"from_ms": now_ms - (args.days + 2) * DAY_S * 1000, "to_ms": now_ms}

        def counted(w: Worker) -> bool:
            return w.get("overview", resolution="day", **span)["current"]["events"] == truth["total"]

        first = Worker(state.bootstrap, topics, work, "first", {})
        first.start()
        began = time.perf_counter()
        first.wait(counted, timeout_s=1800, interval_s=1)
        processed_s = time.perf_counter() - began
        first.stop()
        app_id = first.env["PIONEER_WORKER_APP_ID"]
        tables = table_sizes(first.data_dir)
        changelogs = changelog_bytes(broker.log_dirs, app_id)
        print("restoring into an empty data dir ...", file=sys.stderr)
        restorer = Worker(state.bootstrap, topics, work, "restore", {"PIONEER_WORKER_APP_ID": app_id})
        restorer.start()
        began = time.perf_counter()
        restorer.wait(
            lambda w: "Recovery complete" in w.log_path.read_text(errors="replace") and counted(w),
            timeout_s=1800,
            interval_s=0.2,
        )
        restore_s = time.perf_counter() - began
        restorer.stop()
        samples = {table: sample_values(first.data_dir, table) for table in WINDOW_TABLES}
        year = estimate_year(tables, args)
        print("restoring a synthetic year of 1,000 users ...", file=sys.stderr)
        year_app = f"bench-year-{uuid.uuid4().hex[:8]}"
        year_bytes = asyncio.run(fill_changelogs(state.bootstrap, year_app, topics.partitions, year, samples))
        year_worker = Worker(state.bootstrap, topics, work, "year", {"PIONEER_WORKER_APP_ID": year_app})
        year_worker.start()
        began = time.perf_counter()
        year_worker.wait(
            lambda w: "Recovery complete" in w.log_path.read_text(errors="replace"),
            timeout_s=3600,
            interval_s=0.5,
        )
        year_restore_s = time.perf_counter() - began
        year_worker.stop()
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    return {
        "users": args.users, "days": args.days, "sessions_per_week": args.sessions_per_week,
        "events": truth["total"], "processed_s": processed_s, "tables": tables, "changelogs": changelogs,
        "restore_s": restore_s, "year_per_1000_users": year, "year_value_bytes_restored": year_bytes,
        "year_restore_s": year_restore_s,
    }  # fmt: skip


def estimate_year(
    tables: dict[str, dict[str, float]], args: argparse.Namespace
) -> dict[str, dict[str, float]]:
    """The week's tables scaled to 1,000 users and to what a year keeps of each."""
    scale = 1000 / args.users
    return {
        table: {
            "windows": tables[table]["windows"] / args.days * kept,
            "value_bytes": tables[table]["value_bytes"] * scale / args.days * kept,
            "rocksdb_bytes": tables[table]["disk_bytes"] * scale / args.days * kept,
            "changelog_bytes": tables[table]["zstd_bytes"] * scale / args.days * kept,
        }
        for table, kept in KEPT_DAYS.items()
    }


def print_report(report: dict[str, Any]) -> None:
    mb = 1e6
    tables, changelogs, year = report["tables"], report["changelogs"], report["year_per_1000_users"]
    print(f"{report['users']} users x {report['days']} days ({report['events']:,} events, "
          f"{report['sessions_per_week']:g} working blocks a week each), counted in {report['processed_s']:.1f} s\n")  # fmt: skip
    print(
        "| table | windows (run) | values (run) | RocksDB on disk (run) | changelog on disk (run, uncompacted) |"
    )
    print("|---|---:|---:|---:|---:|")
    for table in (*WINDOW_TABLES, "sources"):
        t = tables[table]
        print(f"| {table} | {t['windows']:,} | {t['value_bytes'] / mb:.1f} MB | {t['disk_bytes'] / mb:.1f} MB "
              f"| {changelogs[table] / mb:.1f} MB |")  # fmt: skip
    print(
        f"\nRestore of every table from its changelog into an empty data dir: {report['restore_s']:.1f} s\n"
    )
    print("Per 1,000 users x 1 year (steady state: minutes 1 day, hours 35 days, days 365 days):\n")
    print("| table | windows | values | RocksDB | compacted changelog (zstd) |")
    print("|---|---:|---:|---:|---:|")
    for table, t in year.items():
        print(f"| {table} | {t['windows']:,.0f} | {t['value_bytes'] / mb:,.0f} MB | {t['rocksdb_bytes'] / mb:,.0f} MB "
              f"| {t['changelog_bytes'] / mb:,.0f} MB |")  # fmt: skip
    total = {k: sum(t[k] for t in year.values()) for k in ("value_bytes", "rocksdb_bytes", "changelog_bytes")}
    print(f"| **total** | | {total['value_bytes'] / mb:,.0f} MB | {total['rocksdb_bytes'] / mb:,.0f} MB "
          f"| {total['changelog_bytes'] / mb:,.0f} MB |")  # fmt: skip
    print(f"\nRestore of such a year (synthetic changelogs of that size, {report['year_value_bytes_restored'] / mb:,.0f} MB "
          f"of values) into an empty data dir: {report['year_restore_s']:,.1f} s")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--days", type=int, default=7, help="simulated days (a whole week by default)")
    parser.add_argument("--sessions-per-week", type=float, default=3.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = measure(args)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)


if __name__ == "__main__":
    main()
