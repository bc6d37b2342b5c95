"""Collector throughput: pod log files -> one collector -> Kafka-acknowledged envelopes.

Input: the simulator's CRI log files (50 users, seed 1, `--events N`, fixed start), written once. Each
repeat runs `collector.service.run_collector` (files from the beginning, fresh checkpoint, a fresh raw
topic) in its own fresh process, in an asyncio loop, and times it from the start of `run_collector`
until the Prometheus counter `pioneer_collector_lines_acked_total` reaches the number of pioneer event
lines (server lines are read and filtered out). Reported per repeat:

- lines read/s: every logical line of the files (events and server lines) over that wall time,
- event lines acked/s: the same wall time, counting the lines Kafka acknowledged,
- CPU seconds of the collector process over that time, and its peak RSS (VmHWM: ru_maxrss would
  include the parent's RSS at fork time), and its RSS just before `run_collector` (imports only),
- broker CPU seconds over that time (the broker shares the 2 cores),
- the reference ceiling: the very envelopes the collector wrote (read back from the topic) produced
  again with `AIOKafkaProducer.send_batch` in a loop, producer configured like the collector's
  (zstd, and also without compression), in this process.

Correctness: the raw topic must hold exactly the event lines; otherwise the run prints FAILED.

    .venv/bin/python bench/bench_collector.py [--events 500000] [--repeat 3] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from benchlib import (
    SIM_START,
    Records,
    Results,
    collector_producer,
    create_topics,
    load_average,
    private_broker,
    process_cpu_seconds,
    read_topic,
    send_records,
)

from collector.metrics import COLLECTOR_METRICS, value
from collector.service import run_collector
from collector.settings import CollectorSettings
from pioneer_base.config import KafkaSettings
from simulator.output import FileSink
from simulator.settings import SimulatorSettings
from simulator.simulate import run
from streams.envelope import envelopes
from streams.topics import TopicSettings

TARGET = "100,000"
PARTITIONS = 8
COMPRESSIONS = ("zstd", "none")  # the collector's default, and none


def simulate(out_dir: Path, events: int, users: int) -> tuple[int, int]:
    """Write the pod log files; returns (all logical lines, pioneer event lines)."""
    settings = SimulatorSettings(users=users, seed=1, rate=0, events=events, framing="cri", start=SIM_START)
    truth = run(settings, [FileSink(out_dir)])
    return truth.lines, truth.total


def _vm_kb(field: str) -> int:
    """A memory figure of this process from /proc/self/status (VmRSS, VmHWM = peak RSS), in kB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


async def _collect(
    log_dir: str, checkpoint: str, bootstrap: str, topic: str, expected: int
) -> dict[str, Any]:
    settings = CollectorSettings(
        paths=[f"{log_dir}/*.log"],
        start_at="beginning",
        checkpoint_file=Path(checkpoint),
        status_interval_s=3600,
    )
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    stop = asyncio.Event()
    acked0 = value(COLLECTOR_METRICS.lines_acked)
    received0 = value(COLLECTOR_METRICS.lines_received)
    rss_before = _vm_kb("VmRSS")
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    task = asyncio.create_task(run_collector(settings, kafka, TopicSettings(raw=topic), stop))
    deadline = started + 60 + expected / 2000
    progress: list[tuple[float, float]] = []  # (time, lines acked)
    while (so_far := value(COLLECTOR_METRICS.lines_acked) - acked0) < expected:
        progress.append((time.perf_counter(), so_far))
        if task.done() or time.perf_counter() > deadline:
            break
        await asyncio.sleep(0.005)
    wall = time.perf_counter() - started
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    acked = value(COLLECTOR_METRICS.lines_acked) - acked0
    received = value(COLLECTOR_METRICS.lines_received) - received0
    stop.set()
    await task  # flushes and checkpoints; raises if the collector failed
    cpu = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
    return {
        "wall_s": wall,
        "sustained_per_s": sustained_rate(progress, expected),
        "acked": acked,
        "received": received,
        "cpu_s": cpu,
        "peak_rss_mb": _vm_kb("VmHWM") / 1024,
        "rss_before_mb": rss_before / 1024,
        "settings": settings.model_dump(include={"compression", "batch_bytes", "linger_ms", "buffer_bytes"}),
    }


def sustained_rate(progress: list[tuple[float, float]], total: int) -> float | None:
    """Lines acked per second between 10% and 90% acked: the collector at work, without its start
    (producer connect, metadata, first files opened) or the wait for the last acknowledgements."""
    low = next((p for p in progress if p[1] >= total * 0.1), None)
    high = next((p for p in progress if p[1] >= total * 0.9), None)
    if low is None or high is None or high[0] <= low[0]:
        return None
    return (high[1] - low[1]) / (high[0] - low[0])


def _collector_process(conn: Connection, *args: Any) -> None:
    try:
        conn.send(asyncio.run(_collect(*args)))
    except BaseException as error:
        conn.send({"error": repr(error)})
        raise
    finally:
        conn.close()


def measure_collector(log_dir: Path, work: Path, bootstrap: str, topic: str, expected: int) -> dict[str, Any]:
    """One collector run in a fresh process (clean counters, CPU time and peak RSS)."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    checkpoint = work / f"positions-{topic}.json"
    process = context.Process(
        target=_collector_process, args=(send, str(log_dir), str(checkpoint), bootstrap, topic, expected)
    )
    process.start()
    send.close()
    try:
        result: dict[str, Any] = receive.recv()
    except EOFError:  # the process died without an answer
        result = {"error": f"collector process exited with {process.exitcode}"}
    process.join(60)
    return result


async def producer_ceiling(
    bootstrap: str, topic: str, records: Records, compression: str
) -> dict[str, float]:
    """The same envelopes through a bare aiokafka producer (send_batch), timed like the collector."""
    producer = collector_producer(bootstrap, compression)
    await producer.start()
    try:
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        await asyncio.gather(*await send_records(producer, topic, records))
        wall = time.perf_counter() - started
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        await producer.stop()
    cpu = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu}


def record_run(results: Results, run_result: dict[str, Any], broker_cpu: float) -> None:
    wall = run_result["wall_s"]
    results.add("lines read/s (all lines)", run_result["received"] / wall, "lines/s")
    results.add("event lines acked/s (start to last ack)", run_result["acked"] / wall, "lines/s")
    if run_result["sustained_per_s"] is not None:
        results.add(
            "event lines acked/s, sustained (10% -> 90% acked)",
            run_result["sustained_per_s"],
            "lines/s",
            TARGET,
        )
    results.add("collector wall time", wall, "s")
    results.add("collector CPU", run_result["cpu_s"], "s")
    results.add("collector CPU / wall", run_result["cpu_s"] / wall, "cores")
    results.add("event lines per collector CPU-second", run_result["acked"] / run_result["cpu_s"], "lines/s")
    results.add("collector peak RSS", run_result["peak_rss_mb"], "MB")
    results.add("collector RSS before start (imports)", run_result["rss_before_mb"], "MB")
    results.add("broker CPU (same interval)", broker_cpu, "s")


def bench(
    args: argparse.Namespace, events: int, work: Path, results: Results, say: Callable[[str], None]
) -> dict[str, Any]:
    """Simulate, then the repeats (collector run, then the producer ceilings); returns the config."""
    log_dir = work / "logs"
    began = time.perf_counter()
    total_lines, event_lines = simulate(log_dir, events, args.users)
    size_mb = sum(p.stat().st_size for p in log_dir.glob("*.log")) / 1e6
    say(f"simulated {total_lines} lines ({event_lines} events, {size_mb:.0f} MB) "
        f"in {time.perf_counter() - began:.1f} s")  # fmt: skip
    with private_broker() as broker:
        bootstrap = broker.bootstrap
        say(f"broker {bootstrap} (pid {broker.pid})")
        # all topics up front: a topic just created may still answer NOT_LEADER for a moment
        topics = [create_topics(bootstrap, "collector", PARTITIONS).raw for _ in range(args.repeat)]
        targets = {
            (repeat, compression): create_topics(bootstrap, "ceiling", PARTITIONS).raw
            for repeat in range(args.repeat)
            for compression in COMPRESSIONS
        }
        records: Records | None = None
        for repeat, topic in enumerate(topics):
            broker_cpu0 = process_cpu_seconds(broker.pid)
            run_result = measure_collector(log_dir, work, bootstrap, topic, event_lines)
            broker_cpu = process_cpu_seconds(broker.pid) - broker_cpu0
            if "error" in run_result:
                results.fail(f"collector run {repeat + 1} raised {run_result['error']}")
                break
            written = asyncio.run(read_topic(bootstrap, topic, PARTITIONS))
            stored = sum(len(envelopes(value)) for items in written.values() for _, value in items)
            if run_result["acked"] != event_lines or stored != event_lines:
                results.fail(
                    f"run {repeat + 1}: {run_result['acked']:.0f} acked, {stored} in the topic, "
                    f"{event_lines} event lines in the files"
                )
                continue  # a wrong or missing answer has no speed
            record_run(results, run_result, broker_cpu)
            say(f"run {repeat + 1}: {run_result['acked'] / run_result['wall_s']:,.0f} event lines/s, "
                f"{run_result['cpu_s']:.1f} s CPU, {run_result['peak_rss_mb']:.0f} MB "
                f"(settings {run_result['settings']})")  # fmt: skip
            if records is None:
                records = written
            for compression in COMPRESSIONS:
                target = targets[repeat, compression]
                ceiling = asyncio.run(producer_ceiling(bootstrap, target, records, compression))
                rate = stored / ceiling["wall_s"]
                results.add(f"ceiling: send_batch, {compression}", rate, "lines/s")
                results.add(f"ceiling: send_batch, {compression}, CPU", ceiling["cpu_s"], "s")
                say(f"  ceiling ({compression}): {rate:,.0f} lines/s, {ceiling['cpu_s']:.1f} s CPU")
    return {"events": event_lines, "lines": total_lines, "users": args.users, "repeat": args.repeat,
            "partitions": PARTITIONS, "input_mb": round(size_mb, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=None, help="pioneer events simulated (default 500000)")
    parser.add_argument("--users", type=int, default=50, help="simulated users (one log file each)")
    parser.add_argument("--repeat", type=int, default=3, help="runs; min/median/max are reported")
    parser.add_argument("--quick", action="store_true", help="small input (50000 events)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    results = Results()
    events = args.events or (50_000 if args.quick else 500_000)

    def say(text: str) -> None:
        if not args.json:
            print(text, file=sys.stderr, flush=True)

    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="pt-bench-collector-") as tmp:
        config = bench(args, events, Path(tmp), results, say)
    config["load_average"] = {"before": load_before, "after": load_average()}
    if args.json:
        print(results.as_json(config))
    else:
        title = (f"Collector: {config['lines']:,} lines ({config['events']:,} events, "
                 f"{config['input_mb']:.0f} MB), {args.users} files, {args.repeat} repeats")  # fmt: skip
        print(
            results.table(
                title, [f"Load average (1/5/15 min): {load_before} before, {load_average()} after."]
            )
        )
    if results.failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
