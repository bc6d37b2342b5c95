"""`pioneer-telemetry parse`: pod log files in, normalized events out, through the pipeline's own parser."""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import orjson
import typer
import yaml

from streams.parser import LineParser
from streams.schema import DeadLetter, is_event
from streams.settings import ParserSettings


def parse(
    files: Annotated[
        list[str] | None,
        typer.Argument(
            help="Pod log files (CRI, docker json-file or plain, detected per file); `-` is stdin."
        ),
    ] = None,
    log_format: Annotated[
        str | None, typer.Option("--log-format", help="The exporter's Python logging format.")
    ] = None,
    nebari_config: Annotated[
        Path | None,
        typer.Option("--nebari-config", help="Take the log format from this nebari-config.yml."),
    ] = None,
    capture_content: Annotated[
        bool | None,
        typer.Option(
            "--capture-content/--no-capture-content", help="Keep cell text, keystrokes, tracebacks."
        ),
    ] = None,
) -> None:
    """Print each pioneer event in the logs as one JSON line on stdout; a summary goes to stderr."""
    flags = {"log_format": log_format, "nebari_config": nebari_config, "capture_content": capture_content}
    try:
        parser = LineParser(ParserSettings(**{k: v for k, v in flags.items() if v is not None}))
    except (OSError, ValueError, yaml.YAMLError) as exc:
        typer.echo(f"error: invalid parser settings: {exc}", err=True)
        raise typer.Exit(2) from None

    out = sys.stdout.buffer
    events: Counter[str] = Counter()
    dead_letters: Counter[str] = Counter()
    lines = skipped = 0
    unreadable: list[str] = []
    for name in files or ["-"]:
        results = (
            parser.parse_stream(sys.stdin.buffer, "<stdin>") if name == "-" else parser.parse_file(Path(name))
        )
        try:
            for result in results:
                lines += 1
                if is_event(result):
                    events[result["event_name"]] += 1
                    out.write(orjson.dumps(result, option=orjson.OPT_APPEND_NEWLINE))
                elif isinstance(result, DeadLetter):
                    dead_letters[result.reason] += 1
                    where = f"{result.source['id']}:{result.source['offset']}"
                    typer.echo(f"dead letter at {where}: {result.reason}: {result.detail}", err=True)
                else:
                    skipped += 1
        except BrokenPipeError:  # `parse ... | head`: the reader has all it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(0) from None
        except OSError as exc:
            typer.echo(f"error: cannot read {name}: {exc.strerror or exc}", err=True)
            unreadable.append(name)
    out.flush()

    total = sum(events.values())
    summary = [f"{lines} lines: {total} events, {skipped} skipped, {dead_letters.total()} dead letters"]
    summary += [f"  {name:24s} {count:8d}" for name, count in sorted(events.items())]
    if dead_letters:
        summary.append("dead letters by reason:")
        summary += [f"  {reason:24s} {count:8d}" for reason, count in sorted(dead_letters.items())]
    typer.echo("\n".join(summary), err=True)
    if unreadable:
        raise typer.Exit(1)


def worker(
    web_port: Annotated[int | None, typer.Option(help="Port of the read API (default 6066).")] = None,
    web_host: Annotated[str | None, typer.Option(help="Address of the read API (default 127.0.0.1).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Where the worker keeps its RocksDB tables.")] = None,
    store: Annotated[str | None, typer.Option(help="Table store: rocksdb (default) or memory.")] = None,
) -> None:
    """Run a Faust worker: parse raw lines, publish events, aggregate windows, serve the read API.

    Start several with different ports and data dirs to share the partitions.
    """
    from faust.worker import Worker  # noqa: PLC0415 (faust is heavy; other commands do not need it)

    from pioneer_base.config import KafkaSettings  # noqa: PLC0415
    from pioneer_base.kafka_access import KafkaAccessDenied  # noqa: PLC0415
    from streams.app import create_app  # noqa: PLC0415
    from streams.topics import TopicSettings, ensure_topics, topic_specs  # noqa: PLC0415
    from streams.worker import WorkerSettings, changelog_specs  # noqa: PLC0415

    flags = {"web_port": web_port, "web_host": web_host, "data_dir": data_dir, "store": store}
    settings = WorkerSettings(**{k: v for k, v in flags.items() if v is not None})
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    kafka, topics = KafkaSettings(), TopicSettings()
    try:
        asyncio.run(ensure_topics(kafka, topic_specs(topics) + changelog_specs(settings, topics)))
    except KafkaAccessDenied as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    app = create_app(settings, kafka, topics)
    Worker(
        app, loglevel="INFO", workdir=str(settings.data_dir), redirect_stdouts=False
    ).execute_from_commandline()


def export(
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Folder of the Parquet files and the state.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--from", help="Only events from this time on (ISO 8601, e.g. 2026-09-01).")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--to", help="Only events before this time (ISO 8601).")
    ] = None,
    topic: Annotated[str | None, typer.Option(help="The events topic (default pioneer.events).")] = None,
    day_time_zone: Annotated[
        str | None, typer.Option(help="Days of the date= partitions, as the worker's day windows (UTC).")
    ] = None,
) -> None:
    """Export the events topic to Parquet, a `date=YYYY-MM-DD/` folder per day, deduplicated on event_id;
    a later run appends only what is new."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn  # noqa: PLC0415

    from pioneer_base.config import KafkaSettings  # noqa: PLC0415
    from pioneer_base.kafka_access import KafkaAccessDenied  # noqa: PLC0415
    from streams.export import ExportSettings, run_export  # noqa: PLC0415

    def epoch_ms(text: str | None) -> int | None:
        if text is None:
            return None
        moment = datetime.fromisoformat(text)
        return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)

    flags = {"out_dir": out_dir, "topic": topic, "day_time_zone": day_time_zone,
             "from_ms": epoch_ms(since), "to_ms": epoch_ms(until)}  # fmt: skip
    settings = ExportSettings(**{k: v for k, v in flags.items() if v is not None})
    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task(f"exporting {settings.topic}", total=None)
        try:
            result = run_export(
                settings, KafkaSettings(), lambda done, total: bar.update(task, completed=done, total=total)
            )
        except (KafkaAccessDenied, ValueError) as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(1) from None
    typer.echo(
        f"{result.exported:,} events exported into {len(result.files)} files under {settings.out_dir} "
        f"({result.read:,} records read, {result.duplicates:,} duplicates and {result.outside:,} outside the range skipped)",
        err=True,
    )
