"""docker compose for real: the image built on this machine's Docker engine (deploy/docker/local-docker.sh),
deploy/docker-compose.yml with deploy/compose.external-kafka.yml against a real Kafka, secured
(`kafka start --secure`, SASL_SSL with SCRAM-SHA-512, reachable from the containers on the Docker bridge).
Simulated users' CRI files dropped into the collector's host folder show up in the API and in the
dashboard (real Chromium) exactly; a killed worker container and `compose down && up` lose nothing and
count nothing twice. Failed, never skipped, when the engine cannot be set up."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pioneer_base.kafka_local import BrokerState, LocalBroker, free_port
from tests.clock import iso, recent_hour
from tests.helpers import ApiClient, consume
from tests.test_dashboard_browser import CHROMIUM_ARGS
from tests.truth import all_counted, assert_equals_truth, simulate, truth_range

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]  # a cold machine builds the engine's images first

ROOT = Path(__file__).resolve().parents[1]
LOCAL_DOCKER = ROOT / "deploy" / "docker" / "local-docker.sh"
FILES = [
    "-f",
    str(ROOT / "deploy" / "docker-compose.yml"),
    "-f",
    str(ROOT / "deploy" / "compose.external-kafka.yml"),
]
CONTAINER_UID = 10001


def docker_environment() -> dict[str, str]:
    """The engine, the base image, the compose plugin and the project's image, set up (cached) by the same
    script `make compose-up` uses; the variables that point docker at that engine."""
    built = subprocess.run(["bash", str(LOCAL_DOCKER), "build"], capture_output=True, text=True, check=False)
    assert built.returncode == 0, f"the Docker set-up failed:\n{built.stderr[-3000:]}"
    exports = subprocess.run(
        ["bash", str(LOCAL_DOCKER), "env"], capture_output=True, text=True, check=True
    ).stdout
    variables = dict(item.split("=", 1) for item in exports.removeprefix("export ").split())
    return {k: v for k, v in os.environ.items() if not k.startswith(("PIONEER_", "KAFKA_"))} | variables


@dataclass
class Stack:
    """One compose project of the pipeline, on free host ports, with its own log folder and secrets."""

    env: dict[str, str]
    project: str
    log_dir: Path
    api: ApiClient
    dashboard_url: str
    broker: LocalBroker
    state: BrokerState

    def compose(self, *arguments: str, timeout_s: float = 600) -> str:
        result = subprocess.run(
            ["docker", "compose", "--project-name", self.project, *FILES, *arguments],
            env=self.env, capture_output=True, text=True, timeout=timeout_s, check=False,
        )  # fmt: skip
        assert result.returncode == 0, f"docker compose {' '.join(arguments)}:\n{result.stderr[-3000:]}"
        return result.stdout

    def docker(self, *arguments: str) -> str:
        return subprocess.run(
            ["docker", *arguments], env=self.env, capture_output=True, text=True, check=True
        ).stdout

    def running(self) -> set[str]:
        return set(self.compose("ps", "--services", "--status", "running").split())


def secrets_folder(path: Path, broker: LocalBroker, state: BrokerState) -> Path:
    """What an admin puts in deploy/secrets: the API token and the CA readable by the containers' user
    only, and the Kafka settings (read by compose on the host) with the CA's path inside the containers."""
    path.mkdir(mode=0o755)
    token = path / "api-token"
    token.write_text(uuid.uuid4().hex + "\n")
    shutil.copyfile(broker.pki.ca, path / "kafka-ca.pem")
    for secret in (token, path / "kafka-ca.pem"):
        os.chown(secret, CONTAINER_UID, CONTAINER_UID)
        secret.chmod(0o400)
    client = broker.client_environment(state) | {
        "PIONEER_KAFKA_SSL_CAFILE": "/run/pioneer-secrets/kafka-ca.pem"
    }
    client.pop("KAFKA_BOOTSTRAP_SERVERS")
    (path / "kafka.env").write_text("".join(f"{k}={v}\n" for k, v in client.items()))
    (path / "kafka.env").chmod(0o600)
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = docker_environment()
    base = tmp_path_factory.mktemp("compose")
    bridge = subprocess.run(
        ["bash", str(LOCAL_DOCKER), "bridge-address"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    broker = LocalBroker(base / "kafka")
    state = broker.start(port=0, heap="512m", timeout_s=120, secure=True, host=bridge).state
    log_dir = base / "pod-logs"
    log_dir.mkdir()
    api_port, dashboard_port = free_port(), free_port()
    secrets = secrets_folder(base / "secrets", broker, state)
    env |= {
        "KAFKA_BOOTSTRAP_SERVERS": state.bootstrap,
        "PIONEER_IMAGE": "pioneer-telemetry:local",
        "PIONEER_LOG_DIR": str(log_dir),
        "PIONEER_SECRETS_DIR": str(secrets),
        "PIONEER_API_PUBLISH": f"127.0.0.1:{api_port}",
        "PIONEER_DASHBOARD_PUBLISH": f"127.0.0.1:{dashboard_port}",
        "PIONEER_TOPICS_PARTITIONS": "4",
    }
    project = f"pt-test-{uuid.uuid4().hex[:8]}"
    api = ApiClient(f"http://127.0.0.1:{api_port}", (secrets / "api-token").read_text().strip())
    result = Stack(env, project, log_dir, api, f"http://127.0.0.1:{dashboard_port}", broker, state)
    try:
        result.compose("up", "--detach", "--wait", "--wait-timeout", "240", "--no-build")
        yield result
    finally:
        result.compose("down", "--volumes", "--timeout", "20")
        broker.stop()


def test_the_image_runs_as_a_non_root_user_and_names_its_version(stack: Stack) -> None:
    version = stack.docker("run", "--rm", "pioneer-telemetry:local", "--version").strip()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()  # fmt: skip
    assert version.startswith("pioneer-telemetry 0.")
    assert not commit or version.endswith(f"(commit {commit})")
    user = stack.docker("run", "--rm", "--entrypoint", "id", "pioneer-telemetry:local", "-u").strip()
    assert user == str(CONTAINER_UID)
    tools = stack.docker("run", "--rm", "--entrypoint", "sh", "pioneer-telemetry:local", "-c",
                         "for t in gcc cc make pip pip3 apt-get; do command -v $t; done; true").split()  # fmt: skip
    assert tools == ["/usr/bin/apt-get"]  # the base's own package manager; no compiler, no pip
    assert stack.running() >= {"worker", "collector", "dashboard"}


def test_files_dropped_into_the_log_folder_show_up_exactly_in_the_api_and_the_dashboard(stack: Stack) -> None:
    truth = simulate(stack.log_dir, users=5, minutes=5, seed=21)
    stack.api.wait_until(all_counted(truth), timeout_s=180, what="every simulated event counted")
    assert_equals_truth(stack.api, truth)
    assert stack.api.get("health")["last_24h"]["dead_letters"] == 0
    unauthenticated = ApiClient(stack.api.url)
    with pytest.raises(Exception, match="401"):
        unauthenticated.get("overview")
    events = consume(stack.broker.client_settings(stack.state), "pioneer.events", expected=truth["total"])
    assert len({e["event_id"] for e in events}) == truth["total"]
    assert not any(secret in str(events) for secret in truth["secret_values"])
    shown = dashboard_tiles(stack.dashboard_url, truth_range(truth))
    assert shown["Active users"] == str(len(truth["by_user"]))
    assert shown["Sessions"] == str(len(truth["by_session"]))


def dashboard_tiles(url: str, span: dict[str, int]) -> dict[str, str]:
    """The overview's KPI values for the span, as Chromium renders them."""
    from playwright.sync_api import expect, sync_playwright  # noqa: PLC0415

    chromium = shutil.which("chromium")
    assert chromium, "the dashboard check needs Debian's chromium"

    def minute(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1400}, timezone_id="UTC")
            page.goto(f"{url}/?range=custom&from={minute(span['from_ms'])}&to={minute(span['to_ms'])}")
            tiles = page.locator('[data-testid="stMetric"]')
            expect(tiles.filter(has_text="Active users").first).to_be_visible(timeout=60_000)
            return {
                label: tiles.filter(has_text=label)
                .first.locator('[data-testid="stMetricValue"]')
                .inner_text()
                for label in ("Active users", "Sessions")
            }
        finally:
            browser.close()


def paced_simulator(log_dir: Path, seed: int) -> subprocess.Popen[bytes]:
    """Users writing their pod logs into the collector's folder as it runs, 300 events/s."""
    command = [sys.executable, "-m", "pioneer_telemetry", "simulate", "--users", "4", "--seed", str(seed),
               "--events", "6000", "--rate", "300", "--start", iso(recent_hour(6)), "--out-dir", str(log_dir),
               "--truth", str(log_dir.parent / f"truth-{seed}.json")]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIONEER_")}
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def truth_of(log_dir: Path, seed: int) -> dict[str, Any]:
    return json.loads((log_dir.parent / f"truth-{seed}.json").read_text())


def test_a_killed_worker_container_restarts_and_the_counts_stay_exact(stack: Stack) -> None:
    logs = stack.log_dir.parent / "kill-logs"
    logs.mkdir()
    stack.env["PIONEER_LOG_DIR"] = str(logs)
    stack.compose(
        "up", "--detach", "--wait", "--wait-timeout", "240", "--no-build", "collector"
    )  # now tailing the new folder
    simulator = paced_simulator(logs, seed=31)
    try:
        worker = stack.compose("ps", "--quiet", "worker").strip()
        stack.api.wait_until(
            lambda api: api.get("health")["last_24h"]["events"] > 1000, what="events arriving"
        )
        stack.docker("kill", "--signal", "KILL", worker)  # a manual kill: the restart policy leaves it down
        assert "worker" not in stack.running()
        stack.compose("start", "worker")  # the same container: its RocksDB state as the kill left it
        assert simulator.wait(timeout=120) == 0, simulator.stderr.read() if simulator.stderr else ""
    finally:
        if simulator.poll() is None:
            simulator.send_signal(signal.SIGTERM)
    truth = truth_of(logs, 31)
    stack.api.wait_until(all_counted(truth), timeout_s=240, what="all events counted after the kill")
    assert_equals_truth(stack.api, truth)
    assert stack.compose("ps", "--quiet", "worker").strip() == worker


def test_compose_down_and_up_keeps_every_count(stack: Stack) -> None:
    log_dir = Path(stack.env["PIONEER_LOG_DIR"])
    truth = simulate(log_dir, "--start", iso(recent_hour(9)), users=3, minutes=4, seed=41)
    stack.api.wait_until(all_counted(truth), timeout_s=180, what="every simulated event counted")
    stack.compose("down", "--timeout", "30")  # volumes kept: worker state and collector checkpoints
    assert not stack.compose("ps", "--all", "--quiet").strip()
    stack.compose("up", "--detach", "--wait", "--wait-timeout", "240", "--no-build")
    stack.api.wait_until(lambda api: api.get("health")["lag"] == 0, what="the worker caught up")
    assert_equals_truth(stack.api, truth)  # nothing lost, and the collector read nothing twice
    assert stack.api.get("overview", **truth_range(truth))["current"]["duplicates"] == 0
