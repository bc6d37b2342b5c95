"""The collector's commands: `collect` forwards pod log lines to Kafka; `simulate` writes realistic ones."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from aiokafka.errors import KafkaError

from collector.service import StdinSource, run_collector
from collector.settings import CollectorSettings
from collector.simulate import Exporter, SimulatorSettings, run
from collector.simulate_output import FileSink, KafkaSink, Sink, StreamSink
from pioneer_base.config import KafkaSettings
from pioneer_base.kafka_access import KafkaAccessDenied
from streams.framing import Framing
from streams.topics import TopicSettings


def simulate(
    *,
    users: Annotated[int | None, typer.Option(help="Simulated users, one pod each.")] = None,
    seed: Annotated[int | None, typer.Option(help="Same seed and --start, same output.")] = None,
    start: Annotated[str | None, typer.Option(help="Simulated start time, ISO 8601 (default: now).")] = None,
    rate: Annotated[
        float | None, typer.Option(help="Pioneer events per wall-clock second; 0 = unpaced.")
    ] = None,
    realtime: Annotated[
        bool, typer.Option("--realtime", help="Write each line when its simulated time comes (live demo).")
    ] = False,
    duration: Annotated[float | None, typer.Option(help="Seconds of simulated time.")] = None,
    events: Annotated[int | None, typer.Option(help="Stop after this many pioneer events.")] = None,
    log_format: Annotated[str | None, typer.Option(help="Nebari's jupyterlab_pioneer log_format.")] = None,
    framing: Annotated[Framing | None, typer.Option(help="How the container runtime stores lines.")] = None,
    exporter: Annotated[
        Exporter | None,
        typer.Option(help="logging (Nebari's, with log_format) or command_line (dict reprs, printed)."),
    ] = None,
    clock_skew_ms: Annotated[int | None, typer.Option(help="Largest browser clock offset, ms.")] = None,
    office_hours: Annotated[
        bool | None, typer.Option("--office-hours/--no-office-hours", help="Weight activity by time of day.")
    ] = None,
    sessions_per_week: Annotated[
        float | None, typer.Option(help="A course's rhythm: working blocks per user and week.")
    ] = None,
    out_dir: Annotated[
        str | None, typer.Option(help="A kubelet-named log file per pod here; '-': stdout.")
    ] = None,
    stdout: Annotated[
        bool, typer.Option("--stdout", help="All pods' lines to stdout (the default).")
    ] = False,
    kafka: Annotated[
        bool, typer.Option("--kafka", help="Each line to the raw topic, as Fluent Bit would.")
    ] = False,
    truth: Annotated[Path | None, typer.Option(help="Ground truth JSON, rewritten periodically.")] = None,
) -> None:
    """Simulate users working in JupyterLab and write their pods' pioneer logs.

    Unpaced runs with neither --duration nor --events simulate 10 minutes; paced runs go on until interrupted.
    """
    flags = {
        "users": users,
        "seed": seed,
        "start": start,
        "rate": rate,
        "realtime": realtime or None,
        "duration": duration,
        "events": events,
        "log_format": log_format,
        "framing": framing,
        "exporter": exporter,
        "clock_skew_ms": clock_skew_ms,
        "office_hours": office_hours,
        "sessions_per_week": sessions_per_week,
    }
    settings = SimulatorSettings(**{name: value for name, value in flags.items() if value is not None})
    sinks: list[Sink] = []
    if out_dir is not None and out_dir != "-":
        sinks.append(FileSink(Path(out_dir)))
    if stdout or out_dir == "-" or not (out_dir or kafka):
        sinks.append(StreamSink(sys.stdout.buffer))
    if kafka:
        kafka_settings = KafkaSettings()
        try:
            sinks.append(KafkaSink(kafka_settings, TopicSettings().raw))
        except (KafkaError, KafkaAccessDenied) as error:
            typer.echo(f"cannot produce to Kafka at {kafka_settings.bootstrap_servers}: {error}", err=True)
            raise typer.Exit(1) from None
    began = time.monotonic()
    try:
        result = run(settings, sinks, truth)
    except KeyboardInterrupt:
        typer.echo("interrupted: the sinks and the truth hold everything up to here", err=True)
        raise typer.Exit(130) from None
    except BrokenPipeError:
        # the reader of stdout went away (`| head`): stop quietly, also at interpreter exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None
    elapsed = max(time.monotonic() - began, 1e-9)
    typer.echo(
        f"{result.total} events in {result.lines} lines from {settings.users} users "
        f"in {elapsed:.2f} s ({result.lines / elapsed:,.0f} lines/s)",
        err=True,
    )


def collect(
    *,
    path: Annotated[
        list[str] | None, typer.Option("--path", help="Glob of pod log files to follow; repeatable.")
    ] = None,
    start_at: Annotated[
        str | None, typer.Option(help="Where to start in files seen for the first time: beginning or end.")
    ] = None,
    checkpoint_file: Annotated[
        Path | None, typer.Option(help="Read positions, kept across restarts.")
    ] = None,
    forward_port: Annotated[int | None, typer.Option(help="Accept the Fluent forward protocol here.")] = None,
    stdin: Annotated[bool, typer.Option("--stdin", help="Read lines from stdin (kubectl logs -f).")] = False,
    pod: Annotated[str | None, typer.Option(help="The pod the stdin lines come from.")] = None,
    namespace: Annotated[str | None, typer.Option(help="That pod's namespace.")] = None,
    container: Annotated[str | None, typer.Option(help="That pod's container.")] = None,
    forward_host: Annotated[str | None, typer.Option(help="Address of the forward server.")] = None,
    all_lines: Annotated[
        bool, typer.Option("--all-lines", help="Forward every line, not only possible pioneer events.")
    ] = False,
    metrics_port: Annotated[int | None, typer.Option(help="Serve Prometheus metrics on this port.")] = None,
) -> None:
    """Forward pod log lines (files, forward protocol, stdin) to the raw Kafka topic.

    File positions are checkpointed only once Kafka acknowledged the lines; SIGTERM or Ctrl-C flushes,
    checkpoints and exits.
    """
    flags = {
        "paths": path,
        "start_at": start_at,
        "checkpoint_file": checkpoint_file,
        "forward_port": forward_port,
        "forward_host": forward_host,
        "forward_all": all_lines or None,
        "metrics_port": metrics_port,
    }
    settings = CollectorSettings(**{name: value for name, value in flags.items() if value is not None})
    if stdin and not pod:
        raise typer.BadParameter("lines on stdin carry no pod name", param_hint="--pod")
    source = StdinSource(pod, namespace, container) if stdin and pod else None
    try:
        asyncio.run(_collect(settings, source))
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    except KafkaAccessDenied as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None


async def _collect(settings: CollectorSettings, stdin: StdinSource | None) -> None:
    """Run the collector until SIGINT/SIGTERM (or the end of stdin), then let it flush and checkpoint."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await run_collector(settings, KafkaSettings(), TopicSettings(), stop, stdin)
