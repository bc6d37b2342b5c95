"""The Helm chart installed for real: a single-node Kubernetes v1.34 built and started on this machine
(deploy/k8s/local-cluster.sh), the image of deploy/docker/local-docker.sh loaded into its containerd, and
a real Kafka on the host secured as the chart's default expects (SASL_SSL, SCRAM-SHA-512, the password
and CA from Secrets). `helm install` runs the topics hook; pods named like Nebari's user servers print
simulated pioneer lines, the kubelet writes them to /var/log/containers, the collector DaemonSet reads
them, and the read API (through `kubectl port-forward`, with the chart's generated token) equals the
simulator's truth. Failed, never skipped, when the cluster cannot come up."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shlex
import subprocess
import time
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from pioneer_base.kafka_local import BrokerState, LocalBroker, free_port
from tests.clock import iso, recent_hour
from tests.helpers import ApiClient, wait_for_port
from tests.truth import all_counted, assert_equals_truth, simulate, truth_range

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(2400)]  # a cold machine builds Kubernetes first

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_SCRIPT = ROOT / "deploy" / "k8s" / "local-cluster.sh"
LOCAL_DOCKER = ROOT / "deploy" / "docker" / "local-docker.sh"
CHART = ROOT / "deploy" / "helm" / "pioneer-telemetry"
IMAGE = "pioneer-telemetry:local"
NAMESPACE = "dev"  # Nebari's, and the collector's default filter
RELEASE = "pioneer-telemetry"
WORKER = f"{RELEASE}-worker"
USER_LABEL = "pioneer-telemetry.test/user-pod"
TOPICS = ("pioneer.raw", "pioneer.events", "pioneer.deadletter", "pioneer.aggregates")
# a user server's process: prints its log lines to stderr (where jupyterlab-pioneer logs), paced
PRINTER = """
import sys, time
pace = float(sys.argv[2])
with open(sys.argv[1], encoding="utf-8") as lines:
    for line in lines:
        sys.stderr.write(line)
        sys.stderr.flush()
        if pace:
            time.sleep(pace)
"""


def run(command: list[str], env: dict[str, str], timeout_s: float = 900, stdin: str | None = None) -> str:
    result = subprocess.run(command, env=env, input=stdin, capture_output=True, text=True, timeout=timeout_s,
                            check=False)  # fmt: skip
    assert result.returncode == 0, f"{shlex.join(command)}:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result.stdout


@dataclass
class Cluster:
    env: dict[str, str]
    helm_binary: str
    node_ip: str

    def kubectl(self, *arguments: str, stdin: str | None = None, timeout_s: float = 300) -> str:
        return run(["kubectl", *arguments], self.env, timeout_s, stdin)

    def helm(self, *arguments: str, timeout_s: float = 900) -> str:
        return run([self.helm_binary, *arguments], self.env, timeout_s)

    def json(self, *arguments: str) -> Any:
        return json.loads(self.kubectl(*arguments, "-o", "json"))


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    """The project's image built, the cluster up (both cached after the first run), the image loaded."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIONEER_", "KAFKA_", "KUBECONFIG"))}
    run(["bash", str(LOCAL_DOCKER), "build"], env, timeout_s=1800)
    started = time.monotonic()
    run(["bash", str(CLUSTER_SCRIPT), "up"], env, timeout_s=3600)
    print(f"cluster up in {time.monotonic() - started:.0f} s")
    run(["bash", str(CLUSTER_SCRIPT), "load", IMAGE], env)
    exports = dict(
        shlex.split(line.removeprefix("export "))[0].split("=", 1)
        for line in run(["bash", str(CLUSTER_SCRIPT), "env"], env).splitlines()
        if not line.startswith("export PATH=")
    )
    env |= {"KUBECONFIG": exports["KUBECONFIG"], "PATH": f"{exports['PIONEER_K8S_BIN']}:{env['PATH']}"}
    helm = run(["bash", str(ROOT / "deploy" / "build-helm.sh")], env, timeout_s=1800).strip()
    return Cluster(env, helm, exports["PIONEER_K8S_NODE_IP"])


class ForwardedApi(ApiClient):
    """The worker Service's read API through `kubectl port-forward` on a loopback port; the forward ends
    with the pod behind it, so it is started again when it is gone."""

    def __init__(self, cluster: Cluster, token: str) -> None:
        super().__init__("", token)
        self.cluster = cluster
        self.process: subprocess.Popen[bytes] | None = None

    def get(self, endpoint: str, /, **params: Any) -> Any:
        if self.process is None or self.process.poll() is not None:
            port = free_port()
            self.process = subprocess.Popen(
                ["kubectl", "-n", NAMESPACE, "port-forward", "--address", "127.0.0.1", f"svc/{WORKER}",
                 f"{port}:http"], env=self.cluster.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            wait_for_port(port, timeout_s=30)
            self.url = f"http://127.0.0.1:{port}"
        try:
            return super().get(endpoint, **params)
        except (urllib.error.URLError, ConnectionError):
            self.stop()
            raise

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


@dataclass
class Release:
    cluster: Cluster
    values: Path
    broker: LocalBroker
    state: BrokerState
    api: ForwardedApi
    work: Path

    def secret_token(self) -> str:
        secret = self.cluster.json("-n", NAMESPACE, "get", "secret", f"{RELEASE}-api")
        return base64.b64decode(secret["data"]["token"]).decode()


def chart_values(path: Path, bootstrap: str, state_dir: Path) -> Path:
    """The chart's defaults (SASL_SSL, SCRAM-SHA-512, Secrets), sized for one node and one broker, with the
    locally built image (no registry: it is already in the node's containerd)."""
    values = {
        "image": {"repository": "pioneer-telemetry", "tag": "local", "pullPolicy": "Never"},
        "kafka": {
            "external": {
                "bootstrapServers": bootstrap,
                "sasl": {"username": "pioneer"},
                "tls": {"caSecret": "kafka-cluster-ca"},
            }
        },
        "topics": {"partitions": 4, "replicationFactor": 1},
        "worker": {
            "replicas": 2,
            "persistence": {"size": "1Gi"},
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
        },
        "collector": {"stateHostPath": str(state_dir)},
        "dashboard": {"resources": {"requests": {"cpu": "50m", "memory": "128Mi"}}},
    }
    path.write_text(json.dumps(values, indent=2))
    return path


@pytest.fixture(scope="module")
def release(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    """`helm install` with hooks into a fresh namespace `dev`, against a secured Kafka on the node's
    address; the password and CA Secrets made first, as docs/kubernetes.md says."""
    work = tmp_path_factory.mktemp("k8s")
    broker = LocalBroker(work / "kafka")
    state = broker.start(port=0, heap="512m", timeout_s=120, secure=True, host=cluster.node_ip).state
    api: ForwardedApi | None = None
    try:
        cluster.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait", timeout_s=300)
        cluster.kubectl("create", "namespace", NAMESPACE)
        cluster.kubectl("-n", NAMESPACE, "create", "secret", "generic", "pioneer-telemetry-kafka",
                        f"--from-literal=password={broker.scram_password_file.read_text().strip()}")  # fmt: skip
        cluster.kubectl("-n", NAMESPACE, "create", "secret", "generic", "kafka-cluster-ca",
                        f"--from-file=ca.crt={broker.pki.ca}")  # fmt: skip
        values = chart_values(work / "values.json", state.bootstrap, work / "collector-state")
        cluster.helm("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "-f", str(values), "--wait",
                     "--timeout", "15m")  # fmt: skip
        api = ForwardedApi(cluster, "")
        result = Release(cluster, values, broker, state, api, work)
        api.token = result.secret_token()
        yield result
    finally:
        if api is not None:
            api.stop()
        subprocess.run([cluster.helm_binary, "uninstall", RELEASE, "-n", NAMESPACE, "--wait"], env=cluster.env,
                       capture_output=True, check=False)  # fmt: skip
        subprocess.run(["kubectl", "delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait"],
                       env=cluster.env, capture_output=True, check=False, timeout=300)  # fmt: skip
        broker.stop()


def user_pods(release: Release, log_dir: Path, pace_s: float) -> None:
    """One pod per simulated user, `jupyter-<slug>` with a container `notebook` as Nebari names them,
    printing that user's lines (the simulator's plain files, through a ConfigMap) to stderr."""
    cluster = release.cluster
    cluster.kubectl("-n", NAMESPACE, "delete", "pods,configmaps", "-l", USER_LABEL, "--wait")
    for file in sorted(log_dir.glob("*.log")):
        pod = file.name.split("_")[0]
        configmap = json.loads(cluster.kubectl("-n", NAMESPACE, "create", "configmap", f"lines-{pod}",
                                               f"--from-file=lines.log={file}", "--dry-run=client", "-o", "json"))  # fmt: skip
        configmap["metadata"]["labels"] = {USER_LABEL: "true"}
        manifest = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod, "namespace": NAMESPACE, "labels": {USER_LABEL: "true"}},
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "securityContext": {"runAsUser": 10001, "runAsNonRoot": True},
                "containers": [{
                    "name": "notebook",
                    "image": IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["python3", "-c", PRINTER, "/lines/lines.log", str(pace_s)],
                    "volumeMounts": [{"name": "lines", "mountPath": "/lines"}],
                }],
                "volumes": [{"name": "lines", "configMap": {"name": f"lines-{pod}"}}],
            },
        }  # fmt: skip
        cluster.kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List",
                                                              "items": [configmap, manifest]}))  # fmt: skip


def simulated_users(directory: Path, *shape: str, seed: int, users: int, minutes: int) -> dict[str, Any]:
    """The users' stderr as they print it (plain lines; the kubelet frames them) and its truth."""
    directory.mkdir()
    truth = simulate(directory, "--framing", "plain", *shape, users=users, minutes=minutes, seed=seed)
    assert {path.name.split("_")[1] for path in directory.glob("*.log")} == {NAMESPACE}
    return truth


def topic_partitions(release: Release) -> dict[str, int]:
    """Partitions of each of our topics on the broker."""

    async def describe() -> dict[str, int]:
        admin = AIOKafkaAdminClient(**release.broker.client_settings(release.state).client_options())
        await admin.start()
        try:
            return {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(list(TOPICS))}
        finally:
            await admin.close()

    return asyncio.run(describe())


def ready(cluster: Cluster, kind: str, name: str) -> tuple[int, int]:
    """(ready, desired) replicas of a workload."""
    status = cluster.json("-n", NAMESPACE, "get", kind, name)["status"]
    if kind == "daemonset":
        return status.get("numberReady", 0), status["desiredNumberScheduled"]
    return status.get("readyReplicas", 0), status.get("replicas", 0)


def test_helm_install_runs_the_topics_hook_and_every_workload_gets_ready(release: Release) -> None:
    cluster = release.cluster
    assert cluster.json("version")["serverVersion"]["gitVersion"] == "v1.34.4"
    status = json.loads(cluster.helm("status", RELEASE, "-n", NAMESPACE, "-o", "json"))
    assert status["info"]["status"] == "deployed"
    hooks = {hook["name"]: hook["last_run"]["phase"] for hook in status.get("hooks", [])}
    assert hooks == {f"{RELEASE}-topics": "Succeeded"}
    for kind, name in (("statefulset", WORKER), ("daemonset", f"{RELEASE}-collector"),
                       ("deployment", f"{RELEASE}-dashboard")):  # fmt: skip
        replicas = ready(cluster, kind, name)
        assert replicas[0] == replicas[1] >= 1, (kind, name, replicas)
    assert topic_partitions(release) == {topic: 4 for topic in TOPICS}  # made by the hook
    worker = f"{WORKER}-0"
    identity = cluster.kubectl("-n", NAMESPACE, "exec", worker, "--", "id", "-u").strip()
    assert identity == "10001"
    read_only = subprocess.run(["kubectl", "-n", NAMESPACE, "exec", worker, "--", "touch", "/probe"],
                               env=cluster.env, capture_output=True, text=True, check=False)  # fmt: skip
    assert read_only.returncode != 0
    assert "Read-only file system" in read_only.stderr
    # the secret files the worker reads as uid 10001 (group: the pod's fsGroup)
    listing = cluster.kubectl("-n", NAMESPACE, "exec", worker, "--", "sh", "-c",
                              "cat /var/run/secrets/pioneer/api-token >/dev/null && echo readable")  # fmt: skip
    assert listing.strip() == "readable"


def test_user_pods_logs_are_collected_from_the_kubelet_files_and_equal_the_truth(release: Release) -> None:
    log_dir = release.work / "users"
    truth = simulated_users(log_dir, seed=51, users=4, minutes=4)
    user_pods(release, log_dir, pace_s=0)
    release.api.wait_until(all_counted(truth), timeout_s=300, what="every simulated event counted")
    assert_equals_truth(release.api, truth)
    health = release.api.get("health")
    assert health["last_24h"]["dead_letters"] == 0
    assert len(health["workers"]) == 2  # the fan-out reached both workers by their DNS names
    with pytest.raises(urllib.error.HTTPError, match="401"):
        ApiClient(release.api.url).get("overview")


def test_deleting_the_worker_pod_mid_stream_keeps_the_counts_exact(release: Release) -> None:
    cluster = release.cluster
    log_dir = release.work / "paced"
    truth = simulated_users(log_dir, "--start", iso(recent_hour(6)), seed=61, users=4, minutes=3)
    lines = sum(1 for path in log_dir.glob("*.log") for _ in path.open())
    user_pods(release, log_dir, pace_s=60 / (lines / 4))  # about a minute of printing per pod
    span = truth_range(truth)

    def counted(api: ApiClient) -> int:
        events = api.get("overview", **span)["current"]["events"]
        return events if events > 200 else 0

    at_deletion = release.api.wait_until(counted, timeout_s=120, what="events arriving")
    uid = (
        "-n",
        NAMESPACE,
        "get",
        "pod",
        f"{WORKER}-0",
        "--ignore-not-found",
        "-o",
        "jsonpath={.metadata.uid}",
    )
    before = cluster.kubectl(*uid)
    cluster.kubectl("-n", NAMESPACE, "delete", "pod", f"{WORKER}-0", "--wait=false")
    assert at_deletion < truth["total"]  # deleted mid-stream
    deadline = time.monotonic() + 300
    while cluster.kubectl(*uid) in (before, ""):
        assert time.monotonic() < deadline, "the StatefulSet did not make a new worker pod"
        time.sleep(1)
    cluster.kubectl("-n", NAMESPACE, "wait", "--for=condition=Ready", f"pod/{WORKER}-0", "--timeout=300s")
    release.api.wait_until(all_counted(truth), timeout_s=300, what="all events counted after the deletion")
    assert_equals_truth(release.api, truth)


def test_network_policies_are_applied_but_this_cluster_does_not_enforce_them(release: Release) -> None:
    cluster = release.cluster
    policies = {
        item["metadata"]["name"] for item in cluster.json("-n", NAMESPACE, "get", "networkpolicy")["items"]
    }
    assert policies == {f"{RELEASE}-worker", f"{RELEASE}-dashboard", f"{RELEASE}-collector"}
    # a pod the worker policy does not admit: the bridge CNI lets it through all the same
    probe = ("import socket; socket.create_connection(('pioneer-telemetry-worker', 6066), timeout=10); "
             "print('connected')")  # fmt: skip
    cluster.kubectl("-n", NAMESPACE, "run", "netpol-probe", "--restart=Never", f"--image={IMAGE}",
                    "--image-pull-policy=Never", "--command", "--", "python3", "-c", probe)  # fmt: skip
    cluster.kubectl("-n", NAMESPACE, "wait", "pod/netpol-probe", "--for=jsonpath={.status.phase}=Succeeded",
                    "--timeout=120s")  # fmt: skip
    output = cluster.kubectl("-n", NAMESPACE, "logs", "netpol-probe")
    cluster.kubectl("-n", NAMESPACE, "delete", "pod", "netpol-probe")
    assert output.strip() == "connected", "NetworkPolicy is enforced now: update this test and the docs"


def test_helm_upgrade_with_changed_values_keeps_the_token_and_the_counts(release: Release) -> None:
    cluster = release.cluster
    token = release.secret_token()
    truth = json.loads((release.work / "users" / "truth.json").read_text())
    cluster.helm("upgrade", RELEASE, str(CHART), "--namespace", NAMESPACE, "-f", str(release.values),
                 "--set", "dashboard.replicas=2", "--wait", "--timeout", "10m")  # fmt: skip
    assert ready(cluster, "deployment", f"{RELEASE}-dashboard") == (2, 2)
    assert cluster.json("-n", NAMESPACE, "get", "pdb", f"{RELEASE}-dashboard")["spec"]["maxUnavailable"] == 1
    status = json.loads(cluster.helm("status", RELEASE, "-n", NAMESPACE, "-o", "json"))
    assert (status["version"], status["info"]["status"]) == (2, "deployed")
    assert release.secret_token() == token  # kept across upgrades (the chart's lookup)
    assert_equals_truth(release.api, truth)


# Nebari's kube-prometheus-stack brings the operator's CRDs; production-values.yaml asks for a
# ServiceMonitor and a PodMonitor. Stand-ins of our own: the same group, kinds and version, any fields.
MONITOR_KINDS = ("ServiceMonitor", "PodMonitor")


def monitor_crd(kind: str) -> str:
    plural = f"{kind.lower()}s"
    return f"""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {plural}.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {{kind: {kind}, listKind: {kind}List, plural: {plural}, singular: {kind.lower()}}}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}
"""


def test_every_values_variant_passes_admission_and_pod_security_but_the_log_shippers(
    release: Release,
) -> None:
    """Each ci/ values file but Strimzi's (no Strimzi CRDs here) sent to the apiserver as a server-side dry
    run, into a namespace that warns on Pod Security "restricted": only the log shippers' hostPath and root
    user break it (docs/kubernetes.md: their namespace must allow "privileged")."""
    cluster = release.cluster
    namespace = "admission-check"
    crds = [f"crd/{kind.lower()}s.monitoring.coreos.com" for kind in MONITOR_KINDS]
    cluster.kubectl("apply", "-f", "-", stdin="---".join(map(monitor_crd, MONITOR_KINDS)))
    cluster.kubectl("wait", "--for=condition=Established", *crds)
    cluster.kubectl("create", "namespace", namespace)
    try:
        cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/warn=restricted")
        for values in sorted((CHART / "ci").glob("*-values.yaml")):
            if values.name == "strimzi-values.yaml":
                continue
            manifest = cluster.helm(
                "template", RELEASE, str(CHART), "--namespace", namespace, "-f", str(values)
            )
            applied = subprocess.run(
                ["kubectl", "apply", "--dry-run=server", "-n", namespace, "-f", "-"],
                env=cluster.env, input=manifest, capture_output=True, text=True, check=False,
            )  # fmt: skip
            assert applied.returncode == 0, (values.name, applied.stderr)
            warnings = [line for line in applied.stderr.splitlines() if "would violate PodSecurity" in line]
            assert bool(warnings) == ("hostPath:" in manifest), (values.name, warnings)  # a log shipper's
            assert all('"hostPath"' in line for line in warnings), (values.name, warnings)
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false")
        cluster.kubectl("delete", *crds, "--wait=false")


def test_helm_uninstall_leaves_nothing_of_the_release_behind(release: Release) -> None:
    cluster = release.cluster
    release.api.stop()
    cluster.helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", "--timeout", "5m")
    selector = f"app.kubernetes.io/instance={RELEASE}"
    kinds = cluster.kubectl("api-resources", "--verbs=list", "-o", "name").split()

    def left() -> list[str]:
        return sorted(cluster.kubectl("get", ",".join(kinds), "-A", "-l", selector, "-o", "name").split())

    deadline = time.monotonic() + 120  # the pods of the deleted controllers are removed after them
    while any(name.startswith("pod/") for name in left()):
        assert time.monotonic() < deadline, left()
        time.sleep(2)
    # only the workers' volumes stay, as documented (they hold the tables)
    assert left() == [
        f"persistentvolumeclaim/data-{WORKER}-0",
        f"persistentvolumeclaim/data-{WORKER}-1",
    ]
    assert not cluster.kubectl(
        "-n", NAMESPACE, "get", "secret", f"{RELEASE}-api", "--ignore-not-found"
    ).strip()
    cluster.kubectl("-n", NAMESPACE, "delete", "pvc", "-l", selector, "--wait")
