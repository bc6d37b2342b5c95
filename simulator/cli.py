"""The simulator's command: `simulate` writes realistic jupyterlab-pioneer pod logs (files, stdout or
Kafka through the collector's own sink)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from aiokafka.errors import KafkaError

from pioneer_base.config import KafkaSettings
from pioneer_base.kafka_access import KafkaAccessDenied
from simulator.settings import Exporter, SimulatorSettings
from streams.framing import Framing
from streams.topics import TopicSettings

if TYPE_CHECKING:
    from simulator.output import Sink


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
    # the sinks bring the collector's Kafka code: heavy, and a worker's start does not need it
    from simulator.output import FileSink, KafkaSink, StreamSink  # noqa: PLC0415
    from simulator.simulate import run  # noqa: PLC0415

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
