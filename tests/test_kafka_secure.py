"""Against `pioneer-telemetry kafka start --secure`, a real broker with SASL_SSL (SCRAM-SHA-512) and mutual
TLS only: the whole pipeline is exact over both, plaintext is refused, and a wrong password or an unknown CA
ends a component at once with one line that says what to fix."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from pioneer_base.config import KafkaSettings
from pioneer_base.kafka_access import KafkaAccessDenied, check_access
from pioneer_base.kafka_local import BrokerState, LocalBroker
from pioneer_base.tls import LocalPki
from streams.topics import ensure_topics, topic_specs
from tests.helpers import WorkerProcess, unique_topics, worker_env
from tests.truth import all_counted, assert_equals_truth, collect, simulate

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalBroker, BrokerState]]:
    broker = LocalBroker(tmp_path_factory.mktemp("secure-kafka"))
    result = broker.start(port=0, heap="512m", timeout_s=120, secure=True)
    try:
        yield broker, result.state
    finally:
        broker.stop()


def test_client_env_files_are_private_and_name_every_setting(
    secure_broker: tuple[LocalBroker, BrokerState],
) -> None:
    broker, state = secure_broker
    lines = dict(line.split("=", 1) for line in broker.client_env.read_text().splitlines())
    assert lines["KAFKA_BOOTSTRAP_SERVERS"] == state.bootstrap
    assert lines["PIONEER_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert lines["PIONEER_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert lines["PIONEER_KAFKA_SASL_USERNAME"]
    assert lines["PIONEER_KAFKA_SASL_PASSWORD"]
    assert Path(lines["PIONEER_KAFKA_SSL_CAFILE"]).is_file()
    mtls = dict(line.split("=", 1) for line in broker.mtls_client_env.read_text().splitlines())
    assert mtls["PIONEER_KAFKA_SECURITY_PROTOCOL"] == "SSL"
    assert Path(mtls["PIONEER_KAFKA_SSL_CERTFILE"]).is_file()
    for path in (
        broker.client_env,
        broker.mtls_client_env,
        broker.scram_password_file,
        broker.pki.client_key,
    ):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_plaintext_and_wrong_credentials_are_refused(secure_broker: tuple[LocalBroker, BrokerState]) -> None:
    broker, state = secure_broker
    sasl, mtls = broker.client_settings(state), broker.client_settings(state, mtls=True)
    asyncio.run(check_access(sasl))
    asyncio.run(check_access(mtls))
    refused = {
        "plaintext": (KafkaSettings(bootstrap_servers=state.bootstrap), "closed the connection"),
        "plaintext to mTLS": (KafkaSettings(bootstrap_servers=mtls.bootstrap_servers), "closed the connection"),
        "wrong password": (sasl.model_copy(update={"sasl_password": SecretStr("x")}), "wrong username or password"),
        "unknown CA": (sasl.model_copy(update={"ssl_cafile": None}), "PIONEER_KAFKA_SSL_CAFILE"),
        "no client certificate": (
            mtls.model_copy(update={"ssl_certfile": None, "ssl_keyfile": None}),
            "client certificate",
        ),
    }  # fmt: skip
    for settings, message in refused.values():
        with pytest.raises(KafkaAccessDenied, match=message):
            asyncio.run(check_access(settings))


def secure_env(broker: LocalBroker, state: BrokerState, tmp_path: Path, **changes: str) -> dict[str, str]:
    """A process environment with the broker's client.env, the password passed as a file (as Kubernetes
    mounts a Secret), then `changes`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIONEER_", "KAFKA_"))}
    client = broker.client_environment(state)
    password = tmp_path / "password"
    password.write_text(client.pop("PIONEER_KAFKA_SASL_PASSWORD") + "\n")
    return env | client | {"PIONEER_KAFKA_SASL_PASSWORD_FILE": str(password)} | changes


@pytest.mark.parametrize(
    ("command", "timeout_s"),
    [(["topics", "create"], 30), (["collect", "--path", "/nonexistent/*.log"], 30), (["worker"], 60)],
)
def test_a_wrong_password_or_an_unknown_ca_ends_a_component_with_one_line(
    secure_broker: tuple[LocalBroker, BrokerState], tmp_path: Path, command: list[str], timeout_s: float
) -> None:
    broker, state = secure_broker
    other_ca = LocalPki(tmp_path / "other")
    other_ca.create(["127.0.0.1"])
    bad_password = tmp_path / "bad"
    bad_password.write_text("not-the-password\n")
    cases = {
        "wrong username or password": {"PIONEER_KAFKA_SASL_PASSWORD_FILE": str(bad_password)},
        "certificate we do not trust": {"PIONEER_KAFKA_SSL_CAFILE": str(other_ca.ca)},
    }
    for message, change in cases.items():
        env = secure_env(broker, state, tmp_path, PIONEER_WORKER_DATA_DIR=str(tmp_path / "w"), **change)
        began = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "pioneer_telemetry", *command],
            env=env, capture_output=True, text=True, timeout=timeout_s, check=False,
        )  # fmt: skip
        assert result.returncode == 1, result.stderr[-2000:]
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, result.stderr[-2000:]
        assert message in errors[0]
        assert "not-the-password" not in result.stderr
        assert time.monotonic() - began < timeout_s


@pytest.mark.parametrize("mtls", [False, True], ids=["SASL_SSL SCRAM-SHA-512", "mutual TLS"])
def test_the_whole_pipeline_is_exact_over_a_secured_broker(
    secure_broker: tuple[LocalBroker, BrokerState], tmp_path: Path, mtls: bool
) -> None:
    broker, state = secure_broker
    kafka = broker.client_settings(state, mtls=mtls)
    topics = unique_topics(f"s{uuid.uuid4().hex[:8]}")
    asyncio.run(ensure_topics(kafka, topic_specs(topics)))
    truth = simulate(tmp_path / "logs")
    collect(kafka, topics, tmp_path / "logs", tmp_path)
    client_env = broker.client_environment(state, mtls=mtls) if mtls else secure_env(broker, state, tmp_path)
    env = worker_env(kafka.bootstrap_servers, topics, f"pt-sec-{uuid.uuid4().hex[:8]}", client_env)
    worker = WorkerProcess(env, tmp_path / "w", tmp_path / "w.log").start()
    try:
        worker.wait_until(all_counted(truth), what="all events counted over TLS")
        assert_equals_truth(worker, truth)
    finally:
        worker.kill(signal.SIGTERM)
