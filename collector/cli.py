"""The collector's command: `collect` forwards pod log lines to Kafka."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from collector.settings import CollectorSettings
from pioneer_base.config import KafkaSettings
from pioneer_base.kafka_access import KafkaAccessDenied
from streams.topics import TopicSettings

if TYPE_CHECKING:
    from collector.service import StdinSource


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
    from collector.service import StdinSource  # noqa: PLC0415 (heavy; a worker's start does not need it)

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
    from collector.service import run_collector  # noqa: PLC0415

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await run_collector(settings, KafkaSettings(), TopicSettings(), stop, stdin)
