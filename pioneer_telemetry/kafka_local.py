"""A real single-node Apache Kafka (KRaft) for development, tests and the local stack.

The jars come from Maven Central through `deploy/local/pom.xml` (the one place the Kafka version is
pinned) and are cached, so only the first start needs the network. Each broker is identified by its
data directory: several can run side by side, and starting one that already runs is a no-op.

A secured broker (`secure`) has no plaintext client listener: SASL_SSL with SCRAM-SHA-512 on the
bootstrap port, and SSL with client certificates (mutual TLS) on a second port. Its certificates come
from a private CA made at format time (`pioneer_telemetry.tls`), its SCRAM user is created at format
time, and every start writes `client.env` and `client-mtls.env` into the data dir: the
`KAFKA_BOOTSTRAP_SERVERS` and `PIONEER_KAFKA_*` variables a component needs to connect.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
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
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from pioneer_telemetry.config import ComponentSettings, KafkaSettings, cache_dir, state_dir
from pioneer_telemetry.tls import LocalPki

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
        self.pki = LocalPki(self.data_dir / "tls")
        self.scram_password_file = self.data_dir / "scram-password"
        self.client_env = self.data_dir / "client.env"
        self.mtls_client_env = self.data_dir / "client-mtls.env"

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
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
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
                str(self.properties),
                *self._scram_user_arguments(),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise LocalKafkaError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")

    def _scram_user_arguments(self) -> list[str]:
        if not self.secure:
            return []
        password = self.scram_password_file.read_text().strip()
        return ["--add-scram", f"SCRAM-SHA-512=[name={SCRAM_USER},password={password}]"]

    def _launch(
        self, java: str, lib: Path, heap: str, state: BrokerState
    ) -> tuple[BrokerState, subprocess.Popen[bytes]]:
        command = [
            java,
            f"-Xmx{heap}",
            "-Xms256m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={resource_dir() / 'log4j2.properties'}",
            "-cp",
            f"{lib}/*",
            "kafka.Kafka",
            str(self.properties),
        ]
        with self.log_file.open("ab") as out:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
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
        """Guards against pid reuse: the process must be kafka.Kafka with this data dir's properties."""
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return b"kafka.Kafka" in cmdline and str(self.properties).encode() in cmdline

    def _wait_for_exit(self, pid: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self._is_our_process(pid):
                return True
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reap if we are the parent (tests, `up`)
            time.sleep(0.1)
        return not self._is_our_process(pid)

    def _log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        with (self.data_dir / ".lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
