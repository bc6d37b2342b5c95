"""Fault injection on a real 3-broker KRaft cluster: the whole pipeline (collector -> cluster -> two
workers) stays exact through a broker, worker, collector, network, controller and disk fault.

The scenarios live in tests/faults.py (shared with bench/bench_faults.py, which writes
docs/reliability.md). `make test` runs the quick ones (the cluster, a partition leader's and a worker's
SIGKILL); `make test-faults` runs all six (PIONEER_FAULTS=full).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from pioneer_base.kafka_local import LocalCluster
from streams.topics import ensure_topics, topic_specs
from tests.faults import SCENARIOS, FaultRun, Scenario, full_check, start_cluster
from tests.helpers import unique_topics

pytestmark = [pytest.mark.kafka, pytest.mark.faults]

FULL = os.environ.get("PIONEER_FAULTS") == "full"
full_only = pytest.mark.skipif(not FULL, reason="a slow fault scenario: `make test-faults` runs it")


@pytest.fixture(scope="module")
def fault_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = start_cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster
    finally:
        cluster.stop()


def test_the_cluster_has_three_brokers_and_topics_three_replicas_with_min_isr_two(
    fault_cluster: LocalCluster,
) -> None:
    state = fault_cluster.state()
    assert state is not None
    assert fault_cluster.broker_ids(state) == {1, 2, 3}
    assert fault_cluster.active_controller() in {1, 2, 3}
    topics = unique_topics("rf")
    kafka = fault_cluster.client_settings(state)
    asyncio.run(ensure_topics(kafka, topic_specs(topics)))
    assert sorted(fault_cluster.isr(topics.raw, 0)) == [1, 2, 3]

    async def min_isr() -> str:
        """Asked until the answering broker knows the new topic: brokers learn of it from the controller
        one after another, and one that has not yet answers with an error and no entries (seen in CI)."""
        admin = AIOKafkaAdminClient(**kafka.client_options())
        await admin.start()
        try:
            for _ in range(100):
                (response,) = await admin.describe_configs(
                    [ConfigResource(ConfigResourceType.TOPIC, topics.raw)]
                )
                error, message, _, _, entries = response.resources[0]
                if error == 0:
                    return next(entry[1] for entry in entries if entry[0] == "min.insync.replicas")
                await asyncio.sleep(0.1)
            raise AssertionError(f"describe_configs {topics.raw}: error {error} {message}")
        finally:
            await admin.close()

    assert asyncio.run(min_isr()) == "2"


def check(run: FaultRun) -> None:
    run.assert_exact()
    full_check(run)  # tests/truth.py's every aggregate, on both workers


def marks_of(scenario: Scenario) -> list[pytest.MarkDecorator]:
    return [] if scenario.quick else [full_only]


@pytest.mark.parametrize("scenario", [pytest.param(s, id=s.name, marks=marks_of(s)) for s in SCENARIOS])
def test_the_pipeline_stays_exact_through(
    scenario: Scenario, fault_cluster: LocalCluster, tmp_path: Path
) -> None:
    run = FaultRun(fault_cluster, tmp_path, scenario)
    outcome = run.run(check=check)
    print(outcome)  # shown with -s or on failure: what was measured


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pioneer_telemetry", "kafka", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


def test_the_cli_refuses_what_a_cluster_does_not_support(tmp_path: Path) -> None:
    secure = cli("start", "--brokers", "3", "--secure", "--data-dir", str(tmp_path / "a"))
    assert secure.returncode == 2
    assert "--secure is for a single broker only" in secure.stderr
    port = cli("start", "--brokers", "3", "--port", "9999", "--data-dir", str(tmp_path / "b"))
    assert port.returncode == 2
    assert "leave out --port" in port.stderr


@full_only
def test_the_cli_starts_reports_and_stops_a_cluster(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "cli-cluster")
    started = cli("start", "--brokers", "3", "--data-dir", data_dir)
    try:
        assert started.returncode == 0, started.stderr
        bootstrap = started.stdout.strip()
        assert len(bootstrap.split(",")) == 3
        assert cli("start", "--brokers", "3", "--data-dir", data_dir).stdout.strip() == bootstrap  # no-op
        status = cli("status", "--data-dir", data_dir)
        assert (status.returncode, status.stdout.strip()) == (0, bootstrap)
        assert status.stderr.count(" up") == 3
        single = cli("start", "--data-dir", data_dir)
        assert single.returncode == 1
        assert "holds a local cluster" in single.stderr
    finally:
        assert cli("stop", "--data-dir", data_dir).returncode == 0
    assert cli("status", "--data-dir", data_dir).returncode == 1
