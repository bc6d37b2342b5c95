"""deploy/: the checks of deploy/validate.sh, and what only the project's own code can check.

validate.sh (Dockerfile, compose file, Helm chart; see its header) runs once per session and leaves the
rendered manifests behind; the tests below then hold them against the settings models: every
`PIONEER_*` variable a deployment sets must be a field of a real settings model and parse, and the
Strimzi KafkaTopics must be the topics `streams/topics.py` creates.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.settings import CollectorSettings
from pioneer_base.config import ComponentSettings, KafkaSettings
from simulator.settings import SimulatorSettings
from streams.settings import ParserSettings
from streams.topics import TopicSettings, topic_specs
from streams.worker import WorkerSettings

ROOT = Path(__file__).resolve().parent.parent
MODELS: list[type[ComponentSettings]] = [
    KafkaSettings,
    TopicSettings,
    ParserSettings,
    WorkerSettings,
    CollectorSettings,
    SimulatorSettings,
]
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
# the first test to use `rendered` runs validate.sh, which builds helm from source on a fresh machine
pytestmark = pytest.mark.timeout(1800)


def _dashboard_model() -> type[ComponentSettings] | None:
    """The dashboard's settings model, once it exists (found by its env prefix, without importing the
    Streamlit page modules)."""
    for path in sorted((ROOT / "dashboard").glob("*.py")):
        if "PIONEER_DASHBOARD_" in path.read_text(encoding="utf-8") and "env_prefix" in path.read_text(
            encoding="utf-8"
        ):
            module = __import__(f"dashboard.{path.stem}", fromlist=["*"])
            for value in vars(module).values():
                if (
                    isinstance(value, type)
                    and issubclass(value, ComponentSettings)
                    and value.model_config.get("env_prefix") == "PIONEER_DASHBOARD_"
                ):
                    return value
    return None


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run deploy/validate.sh (the first run builds helm from source: a few minutes) and keep its output."""
    out = tmp_path_factory.mktemp("deploy")
    result = subprocess.run(
        ["bash", str(ROOT / "deploy" / "validate.sh"), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    sys.stdout.write(result.stdout[-6000:])
    assert result.returncode == 0, (
        f"deploy/validate.sh failed:\n{result.stdout[-8000:]}\n{result.stderr[-8000:]}"
    )
    return out


def test_validate_sh_passes(rendered: Path) -> None:
    renderings = sorted((rendered / "helm").glob("*-k8s-*.0.yaml"))
    assert len(renderings) >= 16, renderings  # 8 value sets x 2 Kubernetes versions
    assert (rendered / "docker-compose.yml").is_file()


def _containers(path: Path) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        if doc and doc["kind"] in WORKLOADS:
            for container in doc["spec"]["template"]["spec"]["containers"]:
                out.append((f"{path.name}: {doc['kind']}/{doc['metadata']['name']}", container))
    return out


def _chart_envs(rendered: Path) -> list[tuple[str, dict[str, str]]]:
    envs = []
    for path in sorted((rendered / "helm").glob("*-k8s-1.37.0.yaml")):
        for where, container in _containers(path):
            # values from Secrets stand in as a placeholder; $(POD_NAME) is expanded by the kubelet
            env = {
                e["name"]: e["value"].replace("$(POD_NAME)", "pioneer-telemetry-worker-0")
                if "value" in e
                else "value-from-a-secret"
                for e in container.get("env", [])
                if "value" in e or "secretKeyRef" in e.get("valueFrom", {})
            }
            envs.append((where, env))
    return envs


def _compose_envs(rendered: Path) -> list[tuple[str, dict[str, str]]]:
    spec = yaml.safe_load((rendered / "docker-compose.yml").read_text(encoding="utf-8"))
    envs = []
    for name, service in spec["services"].items():
        env = {
            key: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))
            for key, value in (service.get("environment") or {}).items()
        }
        envs.append((f"docker-compose.yml: {name}", env))
    return envs


def _dockerfile_env() -> list[tuple[str, dict[str, str]]]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    pairs = re.findall(r"\b(PIONEER_[A-Z_]+)=(\S+)", text)
    return [("Dockerfile", dict(pairs))]


SECRETS_DIRS = ("/var/run/secrets/pioneer/", "/run/pioneer-secrets/")  # where the chart, compose mount them


def _field_name(variable: str, model: type[ComponentSettings]) -> str:
    """The field a variable sets: PIONEER_<SECTION>_<FIELD>, or <FIELD>_FILE naming a file that holds it."""
    name = variable.removeprefix(model.model_config["env_prefix"]).lower()
    return name if name in model.model_fields else name.removesuffix("_file")


def _check_env(
    where: str, env: dict[str, str], models: list[type[ComponentSettings]]
) -> tuple[list[str], set[type[ComponentSettings]]]:
    """Every PIONEER_* / KAFKA_BOOTSTRAP_SERVERS name is a field of a model, and the models accept the values."""
    problems = []
    prefixes = {model.model_config["env_prefix"]: model for model in models}
    used: set[type[ComponentSettings]] = set()
    for name in env:
        if name == "KAFKA_BOOTSTRAP_SERVERS":
            used.add(KafkaSettings)
            continue
        if not name.startswith("PIONEER_"):
            continue
        model = next((m for prefix, m in prefixes.items() if name.startswith(prefix)), None)
        if model is None:
            problems.append(f"{where}: {name} belongs to no settings model")
        elif _field_name(name, model) not in model.model_fields:
            problems.append(f"{where}: {name} is no field of {model.__name__}")
        else:
            used.add(model)
    return problems, used


def test_every_variable_is_a_setting_that_parses(
    rendered: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    mounted = tmp_path / "mounted-secret"  # the Secrets exist only in the pod: a stand-in here
    mounted.write_text("secret\n")
    dashboard = _dashboard_model()
    models = MODELS + ([dashboard] if dashboard else [])
    problems: list[str] = []
    for where, all_env in _chart_envs(rendered) + _compose_envs(rendered) + _dockerfile_env():
        env = all_env
        if dashboard is None:  # checked by test_dashboard_variables once the dashboard has its model
            env = {k: v for k, v in all_env.items() if not k.startswith("PIONEER_DASHBOARD_")}
        found, used = _check_env(where, env, models)
        problems += found
        for name in [n for n in os.environ if n.startswith("PIONEER_")]:
            monkeypatch.delenv(name)
        monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, str(mounted) if value.startswith(SECRETS_DIRS) else value)
        for model in used:
            try:
                model()
            except Exception as error:  # a validation error names the variable and value
                problems.append(f"{where}: {model.__name__} rejects its variables: {error}")
    assert not problems, "\n".join(problems)


def test_dashboard_variables(rendered: Path) -> None:
    names = sorted(
        {n for _, env in _chart_envs(rendered) + _compose_envs(rendered) for n in env if "DASHBOARD" in n}
    )
    assert {"PIONEER_DASHBOARD_API_URL", "PIONEER_DASHBOARD_HOST", "PIONEER_DASHBOARD_PORT"} <= set(names)
    dashboard = _dashboard_model()
    if dashboard is None:
        pytest.skip(f"no dashboard settings model (dashboard/settings.py): {names} unchecked")
    missing = [n for n in names if _field_name(n, dashboard) not in dashboard.model_fields]
    assert not missing, f"{dashboard.__name__} has no field for {missing}"


def test_strimzi_topics_are_the_topics_the_code_creates(rendered: Path) -> None:
    docs = list(
        yaml.safe_load_all((rendered / "helm" / "strimzi-k8s-1.37.0.yaml").read_text(encoding="utf-8"))
    )
    topics = {d["spec"]["topicName"]: d["spec"] for d in docs if d and d["kind"] == "KafkaTopic"}
    (worker_env,) = [
        env for where, env in _chart_envs(rendered) if where.startswith("strimzi-") and "StatefulSet" in where
    ]
    settings = TopicSettings(
        partitions=int(worker_env["PIONEER_TOPICS_PARTITIONS"]),
        replication_factor=int(worker_env["PIONEER_TOPICS_REPLICATION_FACTOR"]),
        raw_retention_days=int(worker_env["PIONEER_TOPICS_RAW_RETENTION_DAYS"]),
    )
    expected = {
        spec.name: {"partitions": spec.partitions, "replicas": spec.replication_factor, "config": spec.config}
        for spec in topic_specs(settings)
    }
    actual = {
        name: {
            "partitions": t["partitions"],
            "replicas": t["replicas"],
            "config": {k: str(v) for k, v in t["config"].items()},
        }
        for name, t in topics.items()
    }
    assert actual == expected


def test_chart_defaults_are_the_components_defaults(rendered: Path) -> None:
    """The default rendering changes only what a cluster needs (addresses, paths, replication)."""
    envs = dict(_chart_envs(rendered))
    worker = next(
        env for where, env in envs.items() if where.startswith("default-") and "StatefulSet" in where
    )
    collector = next(
        env for where, env in envs.items() if where.startswith("default-") and "DaemonSet" in where
    )
    topics, parser, collect = TopicSettings(), ParserSettings(), CollectorSettings()
    assert [worker[f"PIONEER_TOPICS_{n.upper()}"] for n in ("raw", "events", "deadletter", "aggregates")] == [
        topics.raw,
        topics.events,
        topics.deadletter,
        topics.aggregates,
    ]
    assert worker["PIONEER_TOPICS_PARTITIONS"] == str(topics.partitions)
    assert worker["PIONEER_WORKER_WEB_PORT"] == str(WorkerSettings().web_port)
    assert worker["PIONEER_PARSER_CAPTURE_CONTENT"] == str(parser.capture_content).lower()
    assert "PIONEER_PARSER_LOG_FORMAT" not in worker  # the parser's own default: Nebari's format
    assert yaml.safe_load(collector["PIONEER_COLLECTOR_NAMESPACES"]) == collect.namespaces
    assert collector["PIONEER_COLLECTOR_POD_GLOB"] == collect.pod_glob
    assert yaml.safe_load(collector["PIONEER_COLLECTOR_CONTAINERS"]) == collect.containers
