"""Every benchmark in one run, side by side: our worker against Quix Streams, a plain Faust agent, an
aiokafka loop (the practical ceiling) and the parse-only limit, plus the collector.

1. A fresh local Kafka (`benchlib.private_broker`: a free port in a temp dir, never 9092).
2. The workload, once: the simulator's pod logs (seed 1, fixed start, keystroke-heavy) as CRI files,
   and their ground truth. The collector (`bench_collector.measure_collector`, its first repeat) reads
   the files into ONE raw topic, exactly as in production; later repeats only measure it again.
3. Throughput, `--repeat` times, contenders in turn: a fresh process each, on that topic, timed from
   ready to caught up; its answer compared with the truth first (see `contenders.py`).
4. Latency at `--rate` events/s on a fresh topic per contender (see `livefeed.py`), one run each.
5. Recovery after kill -9 while consuming, `--repeat` times, each from a fresh group and state.
6. The report: `bench/results/<UTC time>.json` (or `--json-out`) and `docs/benchmarks.md` (or
   `--markdown-out`). Exit status 1 if any answer was wrong.

    .venv/bin/python bench/run_all.py [--quick | --smoke] [--events N] [--users N] [--repeat N]
        [--rate R] [--duration S] [--json-out PATH] [--markdown-out PATH] [--worker-env NAME=VALUE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from bench_collector import measure_collector
from benchlib import SIM_START, create_topics, drop_topics_except, load_average, private_broker, read_topic
from contenders import Contender, Recovery, Run, Workload, contenders, expected_result
from livefeed import LatencyRun, LiveFeed
from report import machine_facts, markdown

from simulator.output import FileSink
from simulator.settings import SimulatorSettings
from simulator.simulate import run
from streams.envelope import envelopes

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 8
SEED = 1
KILL_AT = 1 / 3  # of a contender's throughput run time: when recovery runs kill it
POOL_SIZE = 20_000  # event lines kept as templates for the latency feed
SIZES: dict[str, dict[str, Any]] = {
    "full": {"events": 300_000, "users": 50, "repeat": 3, "duration": 20.0},
    "quick": {"events": 50_000, "users": 50, "repeat": 2, "duration": 8.0},
    "smoke": {"events": 2_000, "users": 5, "repeat": 1, "duration": 2.0},
}

T = TypeVar("T")


STARTED = time.perf_counter()


def say(text: str) -> None:
    print(f"[{time.perf_counter() - STARTED:4.0f} s] {text}", file=sys.stderr, flush=True)


def attempt(what: str, measure: Callable[[], T], failed: Callable[[list[str]], T]) -> T:
    """A harness error in one contender's run is that run's failure, not the end of the benchmark."""
    try:
        return measure()
    except Exception as error:
        say(traceback.format_exc())
        return failed([f"{what}: harness error {error!r}"])


def summary(values: list[float]) -> dict[str, Any] | None:
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "values": values}


# -- the workload -----------------------------------------------------------------------------------


async def partition_ends(bootstrap: str, topic: str, partitions: int) -> list[int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = await consumer.end_offsets(tps)
        return [ends[tp] for tp in tps]
    finally:
        await consumer.stop()


def collect(args: argparse.Namespace, bootstrap: str, work: Path) -> tuple[Workload, dict[str, Any], int]:
    """Simulate, fill the raw topic with the collector (measured), repeat the collector measurement.
    Returns the workload, the collector's figures and the number of lines in the log files."""
    began = time.perf_counter()
    log_dir = work / "logs"
    settings = SimulatorSettings(
        users=args.users, seed=SEED, rate=0, events=args.events, framing="cri", start=SIM_START
    )
    simulated = run(settings, [FileSink(log_dir)])
    truth = simulated.as_dict()
    say(
        f"simulated {truth['total']:,} events ({simulated.lines:,} lines) in {time.perf_counter() - began:.1f} s"
    )
    topics = create_topics(bootstrap, "all", PARTITIONS)
    raw_topics = [topics.raw] + [
        create_topics(bootstrap, "collector", PARTITIONS).raw for _ in range(args.repeat - 1)
    ]
    runs, problems = [], []
    for repeat, topic in enumerate(raw_topics):
        result = measure_collector(log_dir, work, bootstrap, topic, truth["total"])
        if "error" in result or result["acked"] != truth["total"]:
            problems.append(f"collector run {repeat + 1}: {result.get('error') or result['acked']} "
                            f"acked of {truth['total']} event lines")  # fmt: skip
            if repeat == 0:
                sys.exit(f"FAILED: the collector did not fill the raw topic: {problems[0]}")
            continue
        runs.append(result)
        say(f"collector run {repeat + 1}: {result['acked'] / result['wall_s']:,.0f} event lines/s")
    ends = asyncio.run(partition_ends(bootstrap, topics.raw, PARTITIONS))
    workload = Workload(
        bootstrap=bootstrap,
        topics=topics,
        ends=ends,
        truth=truth,
        expected=expected_result(truth),
        work=work,
        worker_env=args.worker_env,
    )
    collector = {
        "problems": problems,
        "lines_per_s": summary([r["received"] / r["wall_s"] for r in runs]),
        "event_lines_per_s": summary([r["acked"] / r["wall_s"] for r in runs]),
        "cpu_s_per_million_lines": summary([r["cpu_s"] / r["acked"] * 1e6 for r in runs]),
        "peak_rss_mb": summary([r["peak_rss_mb"] for r in runs]),
    }
    return workload, collector, simulated.lines


def latency_pool(workload: Workload) -> list[tuple[dict[str, Any], str]]:
    """Real event lines of the raw topic (pod metadata, line), templates for the latency feed."""
    records = asyncio.run(read_topic(workload.bootstrap, workload.topics.raw, PARTITIONS))
    pool = []
    for items in records.values():
        for _, value in items:
            pool += [(e["kubernetes"], e["log"]) for e in envelopes(value)]
    return pool[:POOL_SIZE]


# -- the contenders ---------------------------------------------------------------------------------


def tidy(workload: Workload) -> None:
    """After each contender's run: its topics go, so the next one meets a broker with nothing to
    compact but the workload (`benchlib.drop_topics_except`)."""
    topics = workload.topics
    drop_topics_except(workload.bootstrap, {topics.raw, topics.events, topics.deadletter, topics.aggregates})


def throughput(contender: Contender, workload: Workload, tag: str) -> Run:
    run_ = attempt(contender.name, lambda: contender.throughput(workload, tag), Run)
    tidy(workload)
    if run_.problems:
        say(f"  {contender.name} {tag}: FAILED: {run_.problems}")
    else:
        assert run_.wall_s is not None
        assert run_.cpu_s is not None
        say(f"  {contender.name} {tag}: {workload.total / run_.wall_s:,.0f} events/s, "
            f"{run_.cpu_s:.1f} s CPU, {run_.peak_rss_mb:.0f} MB, {run_.join_s:.1f} s to the first record")  # fmt: skip
    return run_


def latency(contender: Contender, workload: Workload, feed: LiveFeed, args: argparse.Namespace) -> LatencyRun:
    def measure() -> LatencyRun:
        topics = create_topics(workload.bootstrap, f"live-{contender.name}", PARTITIONS)
        with contender.live(workload, topics) as live:
            live.sent = feed.sent
            return asyncio.run(
                feed.run(workload.bootstrap, topics.raw, live.markers, live.cpu_s,
                         rate=args.rate, duration_s=args.duration, tag=contender.name)
            )  # fmt: skip

    result = attempt(contender.name, measure, lambda problems: LatencyRun(problems, [], 0.0, 0.0))
    tidy(workload)
    if result.latencies_ms:
        say(f"  {contender.name}: p50 {result.percentile(50):.0f} ms, p99 {result.percentile(99):.0f} ms "
            f"at {result.offered_per_s:,.0f} events/s {result.problems or ''}")  # fmt: skip
    else:
        say(f"  {contender.name}: FAILED: {result.problems}")
    return result


def recovery(contender: Contender, workload: Workload, runs: list[Run], repeat: int) -> list[Recovery]:
    """Killed once consuming for a third of the time its throughput runs took; `repeat` times (until one
    fails), each from a fresh consumer group and state."""
    walls = [r.wall_s for r in runs if r.wall_s is not None]
    if not walls:
        return [Recovery(["no correct throughput run to time the kill by"])]
    kill_after_s = statistics.median(walls) * KILL_AT
    results = []
    for _ in range(repeat):
        result = attempt(contender.name, lambda: contender.recovery(workload, kill_after_s), Recovery)
        tidy(workload)
        killed_at = "?" if result.killed_at is None else f"{result.killed_at:,}"
        say(f"  {contender.name}: killed {kill_after_s:.1f} s into consuming, at {killed_at} events counted; "
            + (f"consuming again {result.resumed_s:.1f} s and caught up {result.seconds:.1f} s after the "
               "restart" if result.seconds is not None and result.resumed_s is not None
               else f"FAILED: {result.problems}"))  # fmt: skip
        results.append(result)
        if result.problems:  # a wrong answer is FAILED whatever the other runs say
            break
    return results


def recovery_figures(recoveries: list[Recovery]) -> dict[str, Any]:
    """Every run's problems; the times only when every run got the answer right."""
    problems = [problem for r in recoveries for problem in r.problems]
    return {
        "problems": problems,
        "runs": [asdict(r) for r in recoveries],
        "seconds": None if problems else summary([r.seconds for r in recoveries if r.seconds is not None]),
        "resumed_s": None
        if problems
        else summary([r.resumed_s for r in recoveries if r.resumed_s is not None]),
    }


def figures(
    contender: Contender,
    workload: Workload,
    *,
    runs: list[Run],
    ours: list[Run],
    latency_run: LatencyRun | None,
    recovery_runs: list[Recovery] | None,
) -> dict[str, Any]:
    good = [r for r in runs if not r.problems]
    # ours events/s over this one's, within each repeat: the inverse ratio of their wall times
    ratios = [r.wall_s / o.wall_s for r, o in zip(runs, ours, strict=True) if r.wall_s and o.wall_s]
    return {
        "label": contender.label,
        "correctness": bool(runs) and not any(r.problems for r in runs),
        "problems": [problem for r in runs for problem in r.problems],
        "runs": [asdict(r) for r in runs],
        "events_per_s": summary([workload.total / r.wall_s for r in good if r.wall_s]),
        "cpu_s_per_million_events": summary(
            [r.cpu_s / workload.total * 1e6 for r in good if r.cpu_s is not None]
        ),
        "peak_rss_mb": summary([r.peak_rss_mb for r in good if r.peak_rss_mb is not None]),
        "startup_s": summary([r.startup_s for r in good if r.startup_s is not None]),
        "join_s": summary([r.join_s for r in good if r.join_s is not None]),
        "ours_over_this": summary(ratios),
        "latency": None
        if latency_run is None
        else {
            "problems": latency_run.problems,
            "markers": len(latency_run.latencies_ms),
            "p50_ms": latency_run.percentile(50) if latency_run.latencies_ms else None,
            "p99_ms": latency_run.percentile(99) if latency_run.latencies_ms else None,
            "max_ms": max(latency_run.latencies_ms, default=None),
            "offered_per_s": latency_run.offered_per_s,
            "cpu_per_wall": latency_run.cpu_per_wall,
        },
        "recovery": None if recovery_runs is None else recovery_figures(recovery_runs),
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="50,000 events, 2 repeats: under 5 minutes")
    size.add_argument("--smoke", action="store_true", help="2,000 events of 5 users, 1 repeat: for CI")
    parser.add_argument("--events", type=int, help="pioneer events simulated (full: 300,000)")
    parser.add_argument("--users", type=int, help="simulated users (full: 50)")
    parser.add_argument("--repeat", type=int, help="throughput runs per contender (full: 3)")
    parser.add_argument("--rate", type=float, default=2000.0, help="latency runs: events/s produced")
    parser.add_argument("--duration", type=float, help="latency runs: seconds measured (full: 20)")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-recovery", action="store_true")
    parser.add_argument("--json-out", type=Path, help="default: bench/results/<UTC time>.json")
    parser.add_argument("--markdown-out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment for both runs of our worker, e.g. to try a setting; repeatable",
    )
    args = parser.parse_args()
    args.mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    for name, default in SIZES[args.mode].items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    args.worker_env = dict(item.split("=", 1) for item in args.worker_env)
    return args


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Everything, on one private broker; returns the report."""
    began, date = time.perf_counter(), datetime.now(UTC)
    load_before = load_average()
    everyone = contenders()
    with tempfile.TemporaryDirectory(prefix="pt-bench-all-") as tmp, private_broker() as broker:
        say(f"broker {broker.bootstrap} (pid {broker.pid})")
        workload, collector, lines = collect(args, broker.bootstrap, Path(tmp))
        runs: dict[str, list[Run]] = {c.name: [] for c in everyone}
        for repeat in range(args.repeat):
            say(f"throughput, repeat {repeat + 1} of {args.repeat}:")
            for contender in everyone:
                runs[contender.name].append(throughput(contender, workload, f"r{repeat + 1}"))
        on_kafka = [c for c in everyone if c.kafka]
        latencies: dict[str, LatencyRun] = {}
        if not args.skip_latency:
            say(f"latency at {args.rate:,.0f} events/s:")
            feed = LiveFeed(latency_pool(workload), PARTITIONS)
            latencies = {c.name: latency(c, workload, feed, args) for c in on_kafka if c.live_latency}
        recoveries: dict[str, list[Recovery]] = {}
        if not args.skip_recovery:
            say("recovery after kill -9:")
            recoveries = {c.name: recovery(c, workload, runs[c.name], args.repeat) for c in on_kafka}
    return {
        "date": date.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "mode": args.mode,
        "wall_s": time.perf_counter() - began,
        "config": {
            "events": workload.total,
            "users": args.users,
            "seed": SEED,
            "partitions": PARTITIONS,
            "records": sum(workload.ends),
            "lines": lines,
            "mix": {name: n / workload.total for name, n in workload.truth["by_event"].items()},
            "repeat": args.repeat,
            "rate": args.rate,
            "duration_s": args.duration,
            "worker_env": workload.worker_env,
        },
        "machine": machine_facts(),
        "load_average": {"before": load_before, "after": load_average()},
        "collector": collector,
        "contenders": {
            c.name: figures(
                c,
                workload,
                runs=runs[c.name],
                ours=runs["ours"],
                latency_run=latencies.get(c.name),
                recovery_runs=recoveries.get(c.name),
            )
            for c in everyone
        },
    }


def main() -> None:
    args = parse_args()
    report = measure(args)
    stamp = report["date"].replace("-", "").replace(":", "")
    json_out = args.json_out or ROOT / "bench" / "results" / f"{stamp}.json"
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(report, indent=1) + "\n")
    page = markdown(report, " ".join(["bench/run_all.py", *sys.argv[1:]]))
    args.markdown_out.parent.mkdir(parents=True, exist_ok=True)
    args.markdown_out.write_text(page)
    say(f"wrote {json_out} and {args.markdown_out}")
    print("\n".join(line for line in page.splitlines() if line.startswith("|")))
    if not all(c["correctness"] for c in report["contenders"].values()) or report["collector"]["problems"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
