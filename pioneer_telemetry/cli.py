"""The `pioneer-telemetry` command: one entry point for every component."""

from __future__ import annotations

import importlib.metadata
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from pioneer_base.config import KafkaSettings
from pioneer_base.kafka_access import KafkaAccessDenied
from pioneer_base.kafka_local import (
    LocalBroker,
    LocalCluster,
    LocalKafkaError,
    LocalKafkaSettings,
    broker_answers,
)

app = typer.Typer(
    name="pioneer-telemetry",
    help="JupyterLab pioneer telemetry: pod logs -> Kafka -> Faust -> Streamlit.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
kafka_app = typer.Typer(
    help="A real Apache Kafka (KRaft) on this machine: one node, or a cluster (--brokers).",
    no_args_is_help=True,
)
app.add_typer(kafka_app, name="kafka")
topics_app = typer.Typer(help="The pipeline's Kafka topics.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")

DataDirOption = typer.Option(
    None, "--data-dir", help="Broker (or cluster) data directory (identifies the broker or cluster)."
)
CLUSTER_HEAP = "512m"  # per node of a local cluster: three JVMs share the machine


BUILD_COMMIT_FILE = Path(sys.prefix) / "build-commit"  # written by the Dockerfile into the image's venv


def version_text() -> str:
    """The installed version, and the commit an image was built from."""
    text = f"pioneer-telemetry {importlib.metadata.version('pioneer-telemetry')}"
    commit = BUILD_COMMIT_FILE.read_text().strip() if BUILD_COMMIT_FILE.is_file() else ""
    return f"{text} (commit {commit})" if commit else text


def _print_version(value: bool) -> None:
    if value:
        typer.echo(version_text())
        raise typer.Exit


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _local_kafka(
    port: int | None, data_dir: Path | None, secure: bool | None = None, host: str | None = None
) -> LocalKafkaSettings:
    overrides = {"port": port, "data_dir": data_dir, "secure": secure, "host": host}
    return LocalKafkaSettings(**{key: value for key, value in overrides.items() if value is not None})


@kafka_app.command("start")
def kafka_start(
    port: int = typer.Option(
        None, "--port", help="Bootstrap port on 127.0.0.1 (default 9092; 0 = any free)."
    ),
    data_dir: Path = DataDirOption,
    secure: bool = typer.Option(
        None,
        "--secure",
        help="Clients only over SASL_SSL (SCRAM-SHA-512) or mutual TLS; writes DATA_DIR/client.env.",
    ),
    host: str = typer.Option(
        None, "--host", help="Address the client listeners bind and advertise (default 127.0.0.1)."
    ),
    brokers: int = typer.Option(
        1,
        "--brokers",
        min=1,
        help="Nodes (combined KRaft controller + broker, one JVM each, free ports); 1: a single broker.",
    ),
) -> None:
    """Start the broker (downloads Kafka on first use) and print its bootstrap address once it answers.
    With --brokers N (N > 1): a local cluster of N nodes in DATA_DIR/node-1..N; prints every address."""
    settings = _local_kafka(port, data_dir, secure, host)
    if brokers > 1:
        _start_cluster(settings, brokers, port)
        return
    broker = LocalBroker(settings.data_dir)
    try:
        result = broker.start(
            settings.port, settings.heap, settings.start_timeout_s, settings.secure, settings.host
        )
    except LocalKafkaError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    state = "already running" if result.already_running else "started"
    typer.echo(f"Kafka {state} (pid {result.state.pid}), data in {settings.data_dir}", err=True)
    if broker.secure:
        typer.echo(
            f"secured: SASL_SSL on {result.state.bootstrap}, mutual TLS on {result.state.host}:{result.state.mtls_port}; "
            f"clients: set -a; . {broker.client_env}; set +a   (or {broker.mtls_client_env})",
            err=True,
        )
    typer.echo(result.state.bootstrap)


def _start_cluster(settings: LocalKafkaSettings, brokers: int, port: int | None) -> None:
    if settings.secure:
        typer.echo("error: --secure is for a single broker only; a local cluster is plaintext", err=True)
        raise typer.Exit(2)
    if port:
        typer.echo("error: a cluster's nodes take free ports; leave out --port with --brokers", err=True)
        raise typer.Exit(2)
    cluster = LocalCluster(settings.data_dir)
    try:
        result = cluster.start(brokers, CLUSTER_HEAP, max(settings.start_timeout_s, 120.0), settings.host)
    except LocalKafkaError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    state = "already running" if result.already_running else "started"
    pids = ", ".join(f"node {n.node_id} pid {n.pid}" for n in result.state.nodes)
    typer.echo(f"Kafka cluster {state} ({pids}), data in {settings.data_dir}", err=True)
    typer.echo(result.state.bootstrap)


def _is_cluster(data_dir: Path) -> bool:
    return LocalCluster(data_dir).state_file.is_file()


@kafka_app.command("stop")
def kafka_stop(data_dir: Path = DataDirOption) -> None:
    """Stop the broker (or every node of the cluster) cleanly."""
    settings = _local_kafka(None, data_dir)
    if _is_cluster(settings.data_dir):
        stopped = LocalCluster(settings.data_dir).stop()
    else:
        stopped = LocalBroker(settings.data_dir).stop()
    typer.echo("Kafka stopped" if stopped else f"no Kafka running for {settings.data_dir}", err=True)


@kafka_app.command("status")
def kafka_status(data_dir: Path = DataDirOption) -> None:
    """Exit 0 and print the bootstrap address if the broker (every node of a cluster) runs and answers,
    else exit 1."""
    settings = _local_kafka(None, data_dir)
    if _is_cluster(settings.data_dir):
        _cluster_status(LocalCluster(settings.data_dir))
        return
    broker = LocalBroker(settings.data_dir)
    state = broker.state()
    if state is None:
        typer.echo(f"not running ({settings.data_dir})", err=True)
        raise typer.Exit(1)
    if not broker_answers(broker.client_settings(state)):
        typer.echo(f"process {state.pid} runs but {state.bootstrap} does not answer", err=True)
        raise typer.Exit(1)
    typer.echo(state.bootstrap)


def _cluster_status(cluster: LocalCluster) -> None:
    state = cluster.state()
    if state is None:
        typer.echo(f"not running ({cluster.data_dir})", err=True)
        raise typer.Exit(1)
    try:
        registered = cluster.broker_ids(state, timeout_s=5.0)
    except Exception:  # no node answers the metadata request
        registered = set()
    down = [n.node_id for n in state.nodes if not n.pid or n.node_id not in registered]
    for node in state.nodes:
        where = f"127.0.0.1:{node.port}"
        status = "up" if node.node_id not in down else ("down" if not node.pid else "not registered")
        typer.echo(f"node {node.node_id}  {where}  pid {node.pid or '-'}  {status}", err=True)
    if down:
        raise typer.Exit(1)
    typer.echo(state.bootstrap)


@topics_app.command("create")
def topics_create() -> None:
    """Create missing topics and grow ones with too few partitions, on KAFKA_BOOTSTRAP_SERVERS (idempotent:
    for a Kubernetes Job or docker-compose one-shot)."""
    import asyncio  # noqa: PLC0415

    from streams.topics import TopicSettings, ensure_topics, topic_specs  # noqa: PLC0415

    kafka = KafkaSettings()
    try:
        changes = asyncio.run(ensure_topics(kafka, topic_specs(TopicSettings())))
    except Exception as error:  # the admin client's errors are many; all mean "not done"
        typer.echo(f"error: creating topics on {kafka.bootstrap_servers} failed: {error}", err=True)
        raise typer.Exit(1) from None
    for change in changes:
        typer.echo(f"topic      {change.name}  partitions={change.partitions}  {change.action}")


@app.command()
def up(
    *,
    port: Annotated[int | None, typer.Option(help="Port for the local broker (default 9092).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Broker data directory.")] = None,
    secure: Annotated[
        bool | None,
        typer.Option("--secure", help="The local broker over SASL_SSL only (kafka start --secure)."),
    ] = None,
    demo: Annotated[
        bool | None, typer.Option("--demo/--no-demo", help="Simulated users as log source.")
    ] = None,
    worker_port: Annotated[int | None, typer.Option(help="Port of the worker's read API (6066).")] = None,
    dashboard_port: Annotated[int | None, typer.Option(help="Port of the dashboard (8501).")] = None,
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Stack state: demo and component logs.")
    ] = None,
) -> None:
    """Bring up the local stack in the foreground: Kafka, topics, worker, collector, dashboard and the
    simulated demo users. Ctrl-C stops what it started."""
    from pioneer_telemetry.stack import (  # noqa: PLC0415
        LocalStack,
        StackSettings,
        run_until_interrupted,
        stop_on_signals,
    )
    from streams.topics import TopicSettings  # noqa: PLC0415

    stop = stop_on_signals()
    flags = {
        "demo": demo,
        "worker_port": worker_port,
        "dashboard_port": dashboard_port,
        "directory": directory,
    }
    stack_settings = StackSettings(**{k: v for k, v in flags.items() if v is not None})
    stack = LocalStack(KafkaSettings(), _local_kafka(port, data_dir, secure), TopicSettings(), stack_settings)
    try:
        info = stack.start()
    except (LocalKafkaError, KafkaAccessDenied, OSError) as error:
        stack.stop()
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    origin = "started locally" if info.started_broker else "already running, left as is on exit"
    typer.echo(f"Kafka      {info.bootstrap}  ({origin})")
    for topic in info.topics:
        typer.echo(f"topic      {topic.name}  partitions={topic.partitions}  {topic.action}")
    for child in info.children:
        typer.echo(
            f"{child.name:10s} pid {child.process.pid if child.process else '-'}  log {child.log_path}"
        )
    typer.echo(f"API        {info.api_url}")
    typer.echo(f"Dashboard  {info.dashboard_url}")
    typer.echo("Stack is up. Press Ctrl-C to stop.")
    raise typer.Exit(run_until_interrupted(stack, stop))


from collector.cli import collect  # noqa: E402
from simulator.cli import simulate  # noqa: E402

app.command()(simulate)
app.command()(collect)


from streams.cli import export, parse, worker  # noqa: E402

app.command()(parse)
app.command()(worker)
app.command()(export)


from dashboard.cli import dashboard  # noqa: E402

app.command()(dashboard)


def main() -> None:
    app()
