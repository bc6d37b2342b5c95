"""A real single-node Apache Kafka (KRaft) for development, tests and the local stack.

The jars come from Maven Central through `deploy/local/pom.xml` (the one place the Kafka version is
pinned) and are cached, so only the first start needs the network. Each broker is identified by its
data directory: several can run side by side, and starting one that already runs is a no-op.

A secured broker (`secure`) has no plaintext client listener: SASL_SSL with SCRAM-SHA-512 on the
bootstrap port, and SSL with client certificates (mutual TLS) on a second port. Its certificates come
from a private CA made at format time (`pioneer_base.tls`), its SCRAM user is created at format
time, and every start writes `client.env` and `client-mtls.env` into the data dir: the
`KAFKA_BOOTSTRAP_SERVERS` and `PIONEER_KAFKA_*` variables a component needs to connect.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import fcntl
import functools
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic_settings import SettingsConfigDict

from pioneer_base.config import ComponentSettings, KafkaSettings, cache_dir, state_dir

if TYPE_CHECKING:
    from pioneer_base.tls import LocalPki

log = logging.getLogger(__name__)

_PACKAGED = Path(__file__).parent / "kafka_dist"  # wheel install (force-included by pyproject)
_IN_REPO = Path(__file__).resolve().parents[1] / "deploy" / "local"  # source checkout


SCRAM_USER = "pioneer"


class LocalKafkaError(RuntimeError):
    """Something the user must fix (missing Java/Maven, busy port, broker crash); the message says what."""


class LocalKafkaSettings(ComponentSettings):
    """The local broker; `PIONEER_LOCAL_KAFKA_*` or the `local_kafka:` YAML section."""

    section: ClassVar[str] = "local_kafka"
    model_config = SettingsConfigDict(env_prefix="PIONEER_LOCAL_KAFKA_")

    data_dir: Path = state_dir() / "kafka"
    port: int = 9092
    heap: str = "1g"
    start_timeout_s: float = 90.0
    secure: bool = False  # SASL_SSL (SCRAM-SHA-512) and mutual TLS only; see client.env in the data dir
    host: str = "127.0.0.1"  # client listeners' address; the Docker bridge's to serve containers


def resource_dir() -> Path:
    """Folder holding pom.xml and log4j2.properties, whether installed from a wheel or run from a checkout."""
    for candidate in (_PACKAGED, _IN_REPO):
        if (candidate / "pom.xml").is_file():
            return candidate
    raise LocalKafkaError(f"pom.xml for the local Kafka not found in {_PACKAGED} or {_IN_REPO}")


def kafka_version() -> str:
    pom = (resource_dir() / "pom.xml").read_text()
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom)
    if not match:
        raise LocalKafkaError("deploy/local/pom.xml has no <kafka.version> property")
    return match.group(1).strip()


def ensure_jars() -> Path:
    """Return the folder of Kafka's runtime jars, downloading them with Maven on first use."""
    lib = cache_dir() / f"kafka-{kafka_version()}" / "lib"
    marker = lib / ".complete"
    if marker.is_file():
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LocalKafkaError("Maven (mvn) is needed once to fetch Kafka from Maven Central; install it")
    lib.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="lib.", dir=lib.parent))
    log.info("downloading Apache Kafka %s jars from Maven Central (first run only)", kafka_version())
    started = time.monotonic()
    result = subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(resource_dir() / "pom.xml"),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise LocalKafkaError(f"mvn could not fetch Kafka:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    (staging / ".complete").write_text(f"{kafka_version()}\n")
    shutil.rmtree(lib, ignore_errors=True)
    staging.rename(lib)
    log.info("Kafka jars cached in %s (%.1f s)", lib, time.monotonic() - started)
    return lib


def java_executable() -> str:
    """Java 17 or newer, from JAVA_HOME or PATH."""
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        raise LocalKafkaError("Java 17+ is needed to run Kafka; install it (Debian: openjdk-17-jre-headless)")
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    match = re.search(r'version "(\d+)', out)
    if not match or int(match.group(1)) < 17:
        raise LocalKafkaError(f"Kafka 4 needs Java 17 or newer; {java} reports: {out.splitlines()[:1]}")
    return java


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on the port now (TIME_WAIT leftovers do not count, as for Kafka)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def broker_answers(kafka: KafkaSettings, timeout_s: float = 3.0) -> bool:
    """True when the broker answers a metadata request, connecting as `kafka` says."""
    from aiokafka.client import AIOKafkaClient  # noqa: PLC0415 (keeps `kafka status` start-up light)
    from aiokafka.errors import KafkaError  # noqa: PLC0415

    async def probe() -> bool:
        client = AIOKafkaClient(**kafka.client_options(), request_timeout_ms=int(timeout_s * 1000))
        try:
            await asyncio.wait_for(client.bootstrap(), timeout_s)
            return True
        except (KafkaError, OSError, TimeoutError):
            return False
        finally:
            await client.close()

    aiokafka_log = logging.getLogger("aiokafka")
    level = aiokafka_log.level
    aiokafka_log.setLevel(logging.CRITICAL)  # refused connections while starting are expected
    try:
        return asyncio.run(probe())
    finally:
        aiokafka_log.setLevel(level)


def new_cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


def format_storage(
    java: str, lib: Path, properties: Path, cluster_id: str, extra: list[str] | None = None
) -> None:
    """`kafka-storage format` of the node `properties` describes, as part of cluster `cluster_id`."""
    result = subprocess.run(
        [
            java,
            "-cp",
            f"{lib}/*",
            f"-Dlog4j2.configurationFile={resource_dir() / 'log4j2.properties'}",
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={cluster_id}",
            "-c",
            str(properties),
            *(extra or []),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise LocalKafkaError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")


def launch_kafka(
    java: str, lib: Path, heap: str, properties: Path, log_file: Path, *, initial_heap: str = "256m"
) -> subprocess.Popen[bytes]:
    """One Kafka JVM (`kafka.Kafka properties`) in its own session, its output appended to `log_file`."""
    command = [
        java,
        f"-Xmx{heap}",
        f"-Xms{initial_heap}",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={resource_dir() / 'log4j2.properties'}",
        "-cp",
        f"{lib}/*",
        "kafka.Kafka",
        str(properties),
    ]
    with log_file.open("ab") as out:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )


def is_kafka_process(pid: int, properties: Path) -> bool:
    """Guards against pid reuse: the process must be kafka.Kafka with these properties."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"kafka.Kafka" in cmdline and str(properties).encode() in cmdline


def wait_for_exit(pid: int, properties: Path, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not is_kafka_process(pid, properties):
            return True
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap if we are the parent (tests, `up`)
        time.sleep(0.1)
    return not is_kafka_process(pid, properties)


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass(frozen=True)
class BrokerState:
    pid: int
    port: int
    controller_port: int
    mtls_port: int | None = None  # a secured broker's mutual-TLS listener
    host: str = "127.0.0.1"  # where its client listeners bind, and the address they advertise

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class StartResult:
    state: BrokerState
    already_running: bool


class LocalBroker:
    """One broker, identified by its data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self.state_file = self.data_dir / "broker.json"
        self.properties = self.data_dir / "server.properties"
        self.log_file = self.data_dir / "kafka.log"
        self.log_dirs = self.data_dir / "data"
        self.scram_password_file = self.data_dir / "scram-password"
        self.client_env = self.data_dir / "client.env"
        self.mtls_client_env = self.data_dir / "client-mtls.env"

    @functools.cached_property
    def pki(self) -> LocalPki:
        """Imported when used: cryptography costs every command 25 ms, the worker's start too."""
        from pioneer_base.tls import LocalPki  # noqa: PLC0415

        return LocalPki(self.data_dir / "tls")

    @property
    def secure(self) -> bool:
        """A secured data dir stays secured: its SCRAM user and certificates were made at format time."""
        return self.scram_password_file.is_file()

    def client_settings(self, state: BrokerState, mtls: bool = False) -> KafkaSettings:
        """How a client connects to this broker (as client.env or client-mtls.env says)."""
        return KafkaSettings(**self._client_variables(state, mtls))

    def _client_variables(self, state: BrokerState, mtls: bool) -> dict[str, str]:
        """Field name -> value of the client settings (the env files' lines, without their prefixes)."""
        if not self.secure:
            return {"bootstrap_servers": state.bootstrap}
        if mtls:
            return {
                "bootstrap_servers": f"{state.host}:{state.mtls_port}",
                "security_protocol": "SSL",
                "ssl_cafile": str(self.pki.ca),
                "ssl_certfile": str(self.pki.client_cert),
                "ssl_keyfile": str(self.pki.client_key),
            }
        return {
            "bootstrap_servers": state.bootstrap,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": SCRAM_USER,
            "sasl_password": self.scram_password_file.read_text().strip(),
            "ssl_cafile": str(self.pki.ca),
        }

    def client_environment(self, state: BrokerState, mtls: bool = False) -> dict[str, str]:
        """The environment variables of the client settings: what client.env (client-mtls.env) holds."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS"
            if name == "bootstrap_servers"
            else f"PIONEER_KAFKA_{name.upper()}": value
            for name, value in self._client_variables(state, mtls).items()
        }

    def _write_client_env(self, state: BrokerState) -> None:
        for path, mtls in ((self.client_env, False), (self.mtls_client_env, True)):
            path.touch(mode=0o600)
            variables = self.client_environment(state, mtls)
            path.write_text("".join(f"{name}={value}\n" for name, value in variables.items()))

    def state(self) -> BrokerState | None:
        """The running broker's state, or None when no broker of this data dir is alive."""
        try:
            state = BrokerState(**json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        return state if self._is_our_process(state.pid) else None

    def start(
        self,
        port: int = 9092,
        heap: str = "1g",
        timeout_s: float = 90.0,
        secure: bool = False,
        host: str = "127.0.0.1",
    ) -> StartResult:
        """Start the broker (port 0 picks a free one) and return once it answers. `host`: where its client
        listeners bind and what they advertise (e.g. the Docker bridge's address, for containers)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._lock():
            running = self.state()
            if running is not None:
                return StartResult(running, already_running=True)
            if (self.data_dir / "cluster.json").is_file():
                raise LocalKafkaError(f"{self.data_dir} holds a local cluster: start it with --brokers")
            formatted = (self.log_dirs / "meta.properties").is_file()
            if formatted and secure != self.secure:
                raise LocalKafkaError(
                    f"{self.data_dir} holds a {'secured' if self.secure else 'plaintext'} broker: start it "
                    f"{'with' if self.secure else 'without'} --secure, or use another --data-dir"
                )
            port = port or free_port()
            if not port_is_free(port, host):
                raise LocalKafkaError(f"port {port} on {host} is in use; choose another with --port")
            lib, java = ensure_jars(), java_executable()
            state = BrokerState(0, port, free_port(), free_port() if secure else None, host)
            if secure and not formatted:
                self.pki.create(list(dict.fromkeys(["127.0.0.1", "localhost", host])))
                self.scram_password_file.touch(mode=0o600)
                self.scram_password_file.write_text(secrets.token_urlsafe(24))
            self._write_properties(state)
            if not formatted:
                self._format_storage(java, lib)
            state, process = self._launch(java, lib, heap, state)
            if self.secure:
                self._write_client_env(state)
        self._wait_until_ready(state, process, timeout_s)
        return StartResult(state, already_running=False)

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the broker cleanly (SIGTERM, then SIGKILL after `timeout_s`). False if none was running."""
        state = self.state()
        if state is None:
            self.state_file.unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(state.pid, signal.SIGTERM)
        if not self._wait_for_exit(state.pid, timeout_s):
            log.warning("broker pid %d ignored SIGTERM for %.0f s; killing it", state.pid, timeout_s)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(state.pid, signal.SIGKILL)
            self._wait_for_exit(state.pid, 10)
        self.state_file.unlink(missing_ok=True)
        return True

    def _write_properties(self, state: BrokerState) -> None:
        port, controller_port = state.port, state.controller_port
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
            "listeners": f"PLAINTEXT://{state.host}:{port},CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://{state.host}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.log_dirs),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",  # Faust creates its changelog/repartition topics itself
        }
        if state.mtls_port is not None:
            settings |= self._secure_properties(state)
        self.properties.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))

    def _secure_properties(self, state: BrokerState) -> dict[str, str]:
        """Clients: SASL_SSL with SCRAM-SHA-512, or mutual TLS. The broker talks to itself (inter-broker
        and controller) over mutual TLS with its own certificate: nothing answers in plaintext."""
        return {
            "listeners": f"SASL_SSL://{state.host}:{state.port},MTLS://{state.host}:{state.mtls_port},"
            f"CONTROLLER://127.0.0.1:{state.controller_port}",
            "advertised.listeners": f"SASL_SSL://{state.host}:{state.port},MTLS://{state.host}:{state.mtls_port}",
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL,MTLS:SSL,CONTROLLER:SSL",
            "inter.broker.listener.name": "MTLS",
            "listener.name.mtls.ssl.client.auth": "required",
            "listener.name.controller.ssl.client.auth": "required",
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.pki.broker),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.pki.ca),
        }

    def _format_storage(self, java: str, lib: Path) -> None:
        format_storage(java, lib, self.properties, new_cluster_id(), self._scram_user_arguments())

    def _scram_user_arguments(self) -> list[str]:
        if not self.secure:
            return []
        password = self.scram_password_file.read_text().strip()
        return ["--add-scram", f"SCRAM-SHA-512=[name={SCRAM_USER},password={password}]"]

    def _launch(
        self, java: str, lib: Path, heap: str, state: BrokerState
    ) -> tuple[BrokerState, subprocess.Popen[bytes]]:
        process = launch_kafka(java, lib, heap, self.properties, self.log_file)
        state = BrokerState(process.pid, state.port, state.controller_port, state.mtls_port, state.host)
        self.state_file.write_text(json.dumps(state.__dict__))
        return state, process

    def _wait_until_ready(
        self, state: BrokerState, process: subprocess.Popen[bytes], timeout_s: float
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise LocalKafkaError(f"Kafka exited while starting; last log lines:\n{self._log_tail()}")
            if broker_answers(self.client_settings(state), timeout_s=2.0):
                return
            time.sleep(0.2)
        self.stop()
        raise LocalKafkaError(
            f"Kafka did not answer within {timeout_s:.0f} s; last log lines:\n{self._log_tail()}"
        )

    def _is_our_process(self, pid: int) -> bool:
        return is_kafka_process(pid, self.properties)

    def _wait_for_exit(self, pid: int, timeout_s: float) -> bool:
        return wait_for_exit(pid, self.properties, timeout_s)

    def _log_tail(self, lines: int = 25) -> str:
        return log_tail(self.log_file, lines)

    def _lock(self) -> contextlib.AbstractContextManager[None]:
        return data_dir_lock(self.data_dir)


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """One start or stop at a time per data dir (a broker's or a cluster's)."""
    with (data_dir / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class NodeState:
    """One node of a local cluster: a combined controller and broker. Its ports are fixed at format time
    (the controller quorum names them); `pid` is 0 while the node is down."""

    node_id: int
    port: int  # PLAINTEXT client listener (also inter-broker)
    controller_port: int
    proxied_port: int  # PROXIED listener, advertised as `proxy_port`: clients that must pass a proxy
    proxy_port: int  # where a test's TCP proxy for this node listens (nothing listens there by default)
    pid: int = 0


@dataclass(frozen=True)
class ClusterState:
    nodes: tuple[NodeState, ...]
    host: str = "127.0.0.1"

    @property
    def bootstrap(self) -> str:
        """Every node's client listener: clients find the cluster while any node answers."""
        return ",".join(f"{self.host}:{node.port}" for node in self.nodes)

    @property
    def proxied_bootstrap(self) -> str:
        """The nodes through their proxies: a client given this address only ever talks to the proxies,
        since the PROXIED listener advertises the proxy ports."""
        return ",".join(f"{self.host}:{node.proxy_port}" for node in self.nodes)

    def node(self, node_id: int) -> NodeState:
        return next(node for node in self.nodes if node.node_id == node_id)


class LocalCluster:
    """Several Kafka nodes (each a combined KRaft controller and broker, one JVM each) from the same jars,
    identified by one data directory: `node-<id>/` per node and `cluster.json` for the cluster.

    The quorum is static (`controller.quorum.voters`, node ids 1..n) and every node is formatted with the
    same cluster id. Nodes can be killed (`kill_node`, SIGKILL) and started again (`start_node`) one at a
    time, to test what clients do when a broker, a partition leader or the active controller disappears.
    Internal topics are replicated min(3, n) times, with min.insync.replicas 2 from three nodes on."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self.state_file = self.data_dir / "cluster.json"

    def node_dir(self, node_id: int) -> Path:
        return self.data_dir / f"node-{node_id}"

    def properties(self, node_id: int) -> Path:
        return self.node_dir(node_id) / "server.properties"

    def log_file(self, node_id: int) -> Path:
        return self.node_dir(node_id) / "kafka.log"

    def _saved(self) -> ClusterState | None:
        try:
            raw = json.loads(self.state_file.read_text())
            return ClusterState(
                tuple(NodeState(**node) for node in raw["nodes"]), raw.get("host", "127.0.0.1")
            )
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def _save(self, state: ClusterState) -> None:
        payload = {"host": state.host, "nodes": [node.__dict__ for node in state.nodes]}
        self.state_file.write_text(json.dumps(payload, indent=1))

    def state(self) -> ClusterState | None:
        """The cluster with the pid of each node that is alive (0 for the others); None when none is."""
        saved = self._saved()
        if saved is None:
            return None
        nodes = tuple(
            replace(n, pid=n.pid if n.pid and is_kafka_process(n.pid, self.properties(n.node_id)) else 0)
            for n in saved.nodes
        )
        return ClusterState(nodes, saved.host) if any(n.pid for n in nodes) else None

    def start(
        self, brokers: int = 3, heap: str = "512m", timeout_s: float = 120.0, host: str = "127.0.0.1"
    ) -> ClusterStartResult:
        """Start every node that is not running (formatting them on first use) and return once all of
        them are registered brokers."""
        if brokers < 2:
            raise LocalKafkaError("a cluster has at least 2 nodes; for one, use LocalBroker")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._lock():
            saved = self._saved()
            if saved is not None and len(saved.nodes) != brokers:
                raise LocalKafkaError(
                    f"{self.data_dir} holds a cluster of {len(saved.nodes)} nodes; "
                    f"start it with --brokers {len(saved.nodes)} or use another --data-dir"
                )
            if saved is None:
                if (self.data_dir / "broker.json").exists() or (self.data_dir / "data").exists():
                    raise LocalKafkaError(f"{self.data_dir} holds a single broker; use another --data-dir")
                ports = [free_port() for _ in range(4 * brokers)]
                if len(set(ports)) != len(ports):
                    ports = [free_port() for _ in range(4 * brokers)]
                saved = ClusterState(
                    tuple(NodeState(i + 1, *ports[4 * i : 4 * i + 4]) for i in range(brokers)), host
                )
            running = self.state()
            if running is not None and all(n.pid for n in running.nodes):
                return ClusterStartResult(running, already_running=True)
            lib, java = ensure_jars(), java_executable()
            fresh = not any(
                (self.node_dir(n.node_id) / "data" / "meta.properties").is_file() for n in saved.nodes
            )
            cluster_id = new_cluster_id()
            for node in saved.nodes:
                self.node_dir(node.node_id).mkdir(exist_ok=True)
                self._write_properties(saved, node)
                if fresh:
                    format_storage(java, lib, self.properties(node.node_id), cluster_id)
            self._save(saved)
            for node in saved.nodes:
                if running is None or not running.node(node.node_id).pid:
                    self._launch(java, lib, node.node_id, heap)
        state = self.wait_until_ready(timeout_s)
        return ClusterStartResult(state, already_running=False)

    def _launch(self, java: str, lib: Path, node_id: int, heap: str) -> None:
        node = self._node(node_id)
        for port in (node.port, node.controller_port, node.proxied_port):
            if not port_is_free(port):
                raise LocalKafkaError(f"port {port} of node {node_id} is in use by something else")
        process = launch_kafka(
            java, lib, heap, self.properties(node_id), self.log_file(node_id), initial_heap="128m"
        )
        saved = self._saved()
        assert saved is not None
        self._save(
            replace(
                saved,
                nodes=tuple(replace(n, pid=process.pid) if n.node_id == node_id else n for n in saved.nodes),
            )
        )

    def _node(self, node_id: int) -> NodeState:
        saved = self._saved()
        if saved is None:
            raise LocalKafkaError(f"no cluster in {self.data_dir}")
        return saved.node(node_id)

    def wait_until_ready(self, timeout_s: float = 120.0, expected: int | None = None) -> ClusterState:
        """Wait until `expected` (default: every running) nodes are brokers the cluster's metadata lists."""
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.state()
            if state is None:
                raise LocalKafkaError(
                    f"no node of {self.data_dir} runs; last log lines:\n{self._log_tails()}"
                )
            want = expected if expected is not None else sum(1 for n in state.nodes if n.pid)
            with contextlib.suppress(Exception):
                if len(self.broker_ids(state, timeout_s=3.0)) >= want:
                    return state
            if time.monotonic() > deadline:
                raise LocalKafkaError(
                    f"the cluster did not show {want} brokers within {timeout_s:.0f} s:\n{self._log_tails()}"
                )
            time.sleep(0.3)

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop every node (SIGTERM, then SIGKILL after `timeout_s`). False if none was running."""
        state = self.state()
        if state is None:
            return False
        for node in state.nodes:
            if node.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(node.pid, signal.SIGTERM)
        for node in state.nodes:
            if node.pid and not wait_for_exit(node.pid, self.properties(node.node_id), timeout_s):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(node.pid, signal.SIGKILL)
                wait_for_exit(node.pid, self.properties(node.node_id), 10)
        self._save(replace(state, nodes=tuple(replace(n, pid=0) for n in state.nodes)))
        return True

    def kill_node(self, node_id: int) -> None:
        """SIGKILL one node (a crash: no controlled shutdown, no leadership hand-over)."""
        state = self.state()
        node = state.node(node_id) if state else None
        if node is None or not node.pid:
            raise LocalKafkaError(f"node {node_id} of {self.data_dir} is not running")
        os.killpg(node.pid, signal.SIGKILL)
        if not wait_for_exit(node.pid, self.properties(node_id), 10):
            raise LocalKafkaError(f"node {node_id} (pid {node.pid}) survived SIGKILL")

    def start_node(self, node_id: int, heap: str = "512m", timeout_s: float = 120.0) -> ClusterState:
        """Start one node that is down again, and wait until it is a registered broker again."""
        state = self.state()
        if state is not None and state.node(node_id).pid:
            return state
        with self._lock():
            self._launch(java_executable(), ensure_jars(), node_id, heap)
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.state()
            with contextlib.suppress(Exception):
                node = state.node(node_id) if state is not None else None
                own = KafkaSettings(bootstrap_servers=f"{state.host}:{node.port}") if node else None
                if own and broker_answers(own, 2.0) and node_id in self.broker_ids(state, timeout_s=3.0):
                    return state
            if time.monotonic() > deadline:
                raise LocalKafkaError(
                    f"node {node_id} did not come back:\n{log_tail(self.log_file(node_id))}"
                )
            time.sleep(0.3)

    def client_settings(self, state: ClusterState | None = None) -> KafkaSettings:
        state = state or self.state() or self._saved()
        if state is None:
            raise LocalKafkaError(f"no cluster in {self.data_dir}")
        return KafkaSettings(bootstrap_servers=state.bootstrap)

    def broker_ids(self, state: ClusterState | None = None, timeout_s: float = 10.0) -> set[int]:
        """The brokers the cluster's metadata lists now (alive and registered)."""
        cluster = self._run(self._describe_cluster(state), timeout_s)
        return {broker["node_id"] for broker in cluster["brokers"]}

    def partition_leader(self, topic: str, partition: int = 0, timeout_s: float = 10.0) -> int:
        """The node leading `topic`'s `partition` now (-1 while it has none)."""
        return self._run(self._leader(topic, partition), timeout_s)

    def isr(self, topic: str, partition: int = 0, timeout_s: float = 10.0) -> list[int]:
        """The in-sync replicas of `topic`'s `partition`."""
        return self._run(self._leader(topic, partition, isr=True), timeout_s)

    def active_controller(self) -> int:
        """The node leading the KRaft quorum (its `__cluster_metadata` partition): read from the
        quorum-state files of the live nodes, the one with the newest epoch and a leader."""
        state = self.state()
        best: tuple[int, int] = (-1, -1)
        for node in state.nodes if state else ():
            if not node.pid:
                continue
            quorum = self.node_dir(node.node_id) / "data" / "__cluster_metadata-0" / "quorum-state"
            with contextlib.suppress(OSError, ValueError):
                raw = json.loads(quorum.read_text())
                if raw.get("leaderId", -1) >= 0:
                    best = max(best, (raw["leaderEpoch"], raw["leaderId"]))
        if best[1] < 0:
            raise LocalKafkaError("no active controller found")
        return best[1]

    async def _describe_cluster(self, state: ClusterState | None) -> dict:
        from aiokafka.admin import AIOKafkaAdminClient  # noqa: PLC0415

        admin = AIOKafkaAdminClient(**self.client_settings(state).client_options(), request_timeout_ms=5000)
        await admin.start()
        try:
            return await admin.describe_cluster()
        finally:
            await admin.close()

    async def _leader(self, topic: str, partition: int, isr: bool = False) -> Any:
        from aiokafka.admin import AIOKafkaAdminClient  # noqa: PLC0415

        admin = AIOKafkaAdminClient(**self.client_settings().client_options(), request_timeout_ms=5000)
        await admin.start()
        try:
            for _ in range(50):  # a node may not know a new topic yet: metadata spreads asynchronously
                (described,) = await admin.describe_topics([topic])
                for p in described["partitions"]:
                    if p["partition"] == partition:
                        return list(p["isr"]) if isr else p["leader"]
                await asyncio.sleep(0.2)
            raise LocalKafkaError(f"{topic} has no partition {partition}")
        finally:
            await admin.close()

    @staticmethod
    def _run(coroutine: Any, timeout_s: float) -> Any:
        """Run admin coroutines from sync code, even when the caller's thread runs an event loop."""
        aiokafka_log = logging.getLogger("aiokafka")
        level = aiokafka_log.level
        aiokafka_log.setLevel(logging.CRITICAL)  # a dead node refusing connections is expected here
        try:
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                return pool.submit(asyncio.run, asyncio.wait_for(coroutine, timeout_s)).result()
        finally:
            aiokafka_log.setLevel(level)

    def _write_properties(self, state: ClusterState, node: NodeState) -> None:
        replicas = min(3, len(state.nodes))
        min_isr = 2 if replicas >= 3 else 1
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in state.nodes)
        host = state.host
        settings = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://{host}:{node.port},PROXIED://{host}:{node.proxied_port},"
            f"CONTROLLER://127.0.0.1:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{host}:{node.port},PROXIED://{host}:{node.proxy_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,PROXIED:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.node_dir(node.node_id) / "data"),
            "num.partitions": "1",
            "default.replication.factor": str(replicas),
            "min.insync.replicas": str(min_isr),
            "offsets.topic.replication.factor": str(replicas),
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": str(replicas),
            "transaction.state.log.min.isr": str(min_isr),
            "share.coordinator.state.topic.replication.factor": str(replicas),
            "share.coordinator.state.topic.min.isr": str(min_isr),
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "unclean.leader.election.enable": "false",
            # a killed node is noticed in seconds, not the default 9 s session
            "broker.session.timeout.ms": "6000",
            "broker.heartbeat.interval.ms": "1000",
            "replica.lag.time.max.ms": "10000",
        }
        self.properties(node.node_id).write_text("".join(f"{k}={v}\n" for k, v in settings.items()))

    def _log_tails(self) -> str:
        saved = self._saved()
        return "\n".join(
            f"--- node {n.node_id}\n{log_tail(self.log_file(n.node_id), 10)}"
            for n in (saved.nodes if saved else ())
        )

    def _lock(self) -> contextlib.AbstractContextManager[None]:
        return data_dir_lock(self.data_dir)


@dataclass(frozen=True)
class ClusterStartResult:
    state: ClusterState
    already_running: bool
