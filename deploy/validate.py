"""Checks behind deploy/validate.sh, run with the validation tools' Python (PyYAML and jsonschema).

Subcommands (each exits non-zero with one line per problem):
  split RENDERED K8S_OUT CRS_OUT   Strimzi custom resources apart from the rest (kubernetes-validate has no
                                   schema for them)
  policy RENDERED                  our rules for the rendered chart: security contexts, resources, probes,
                                   Services/NetworkPolicies/PDBs that select real pods, worker wiring
  strimzi CRS                      Strimzi Kafka/KafkaNodePool/KafkaTopic against the hand-written shape
                                   below (Strimzi's own CRD schemas come from no package registry)
  compose FILE                     depends_on targets and conditions, health checks, named volumes
  docs-values OUT_DIR DOC...       the chart values shown in the docs (blocks after `<!-- validate: ... -->`)
  context REPO OUT_DIR             the Docker build context after .dockerignore, copied to OUT_DIR
  wheel WHEEL                      the wheel built from that context has what the image runs
"""

from __future__ import annotations

import re
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import yaml

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
# log shippers read 0640-root kubelet files from hostPath: documented exceptions to running as non-root
ROOT_COMPONENTS = {"collector", "fluent-bit"}
STRIMZI_GROUP = "kafka.strimzi.io/"
MONITORING_GROUP = "monitoring.coreos.com/"  # the Prometheus operator's (kube-prometheus-stack)


def load_docs(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def name_of(doc: dict[str, Any]) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


# ---------------------------------------------------------------------------------------------- split


def split(rendered: str, k8s_out: str, crs_out: str) -> list[str]:
    docs = load_docs(rendered)
    crs = [d for d in docs if str(d.get("apiVersion", "")).startswith((STRIMZI_GROUP, MONITORING_GROUP))]
    rest = [d for d in docs if d not in crs]
    for out, part in ((k8s_out, rest), (crs_out, crs)):
        with open(out, "w", encoding="utf-8") as handle:
            yaml.safe_dump_all(part, handle, sort_keys=False)
    print(f"{len(rest)} Kubernetes resources, {len(crs)} Strimzi and Prometheus-operator resources")
    return []


# ---------------------------------------------------------------------------------------------- policy


def pod_template(doc: dict[str, Any]) -> dict[str, Any]:
    spec = doc["spec"]
    return spec["jobTemplate"]["spec"]["template"] if doc["kind"] == "CronJob" else spec["template"]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "<from>") for e in container.get("env", [])}


def policy(rendered: str) -> list[str]:  # noqa: PLR0915 (one rule after the other, read top to bottom)
    docs = load_docs(rendered)
    problems: list[str] = []
    pods = {name_of(d): pod_template(d) for d in docs if d["kind"] in WORKLOADS}
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)

    def pods_selected(selector: dict[str, str]) -> list[dict[str, Any]]:
        return [tpl for tpl in pods.values() if selects(selector, tpl["metadata"].get("labels", {}))]

    def port_names(templates: list[dict[str, Any]]) -> set[str]:
        return {
            port["name"]
            for tpl in templates
            for c in tpl["spec"]["containers"]
            for port in c.get("ports", [])
            if "name" in port
        }

    for doc in docs:
        if doc["kind"] not in WORKLOADS:
            continue
        where = name_of(doc)
        tpl = pod_template(doc)
        spec = tpl["spec"]
        component = tpl["metadata"].get("labels", {}).get("app.kubernetes.io/component", "")
        pod_sc = spec.get("securityContext", {})
        if pod_sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{where}: pod seccompProfile is not RuntimeDefault")
        if component != "fluent-bit" and spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: mounts a service account token it does not need")
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in spec["containers"]:
            cwhere = f"{where} container {container['name']}"
            sc = container.get("securityContext", {})
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{cwhere}: allowPrivilegeEscalation is not false")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{cwhere}: root filesystem is writable")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                problems.append(f"{cwhere}: capabilities are not dropped")
            non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
            if component not in ROOT_COMPONENTS and non_root is not True:
                problems.append(f"{cwhere}: may run as root")
            resources = container.get("resources", {})
            if not resources.get("requests") or "memory" not in resources.get("limits", {}):
                problems.append(f"{cwhere}: needs resource requests and a memory limit")
            image = str(container.get("image", ""))
            if image.endswith(":latest") or ":" not in image.rsplit("/", 1)[-1]:
                problems.append(f"{cwhere}: image {image!r} has no pinned tag")
            if doc["kind"] != "Job":
                if doc["kind"] in {"Deployment", "StatefulSet"} and "readinessProbe" not in container:
                    problems.append(f"{cwhere}: no readinessProbe")
                if not ({"readinessProbe", "livenessProbe"} & set(container)) and component != "collector":
                    problems.append(f"{cwhere}: no probe")
            mounts = {m["name"]: m for m in container.get("volumeMounts", [])}
            for vname, volume in volumes.items():
                host = volume.get("hostPath")
                if host and host.get("type") == "Directory" and not mounts.get(vname, {}).get("readOnly"):
                    problems.append(f"{cwhere}: host directory {host['path']} is mounted writable")
            if image.split(":", maxsplit=1)[0].endswith("pioneer-telemetry") and sc.get(
                "readOnlyRootFilesystem"
            ):
                if not any(m["mountPath"] == "/tmp" for m in mounts.values()):
                    problems.append(f"{cwhere}: read-only root filesystem without a /tmp volume")
                if env_of(container).get("HOME") != "/tmp":
                    problems.append(f"{cwhere}: HOME is not the writable /tmp")

    for svc in by_kind.get("Service", []):
        selected = pods_selected(svc["spec"].get("selector", {}))
        if not selected:
            problems.append(f"{name_of(svc)}: selects no pod of this release")
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort")
            if isinstance(target, str) and target not in port_names(selected):
                problems.append(f"{name_of(svc)}: targetPort {target} is no named port of its pods")

    for kind in ("NetworkPolicy", "PodDisruptionBudget"):
        for doc in by_kind.get(kind, []):
            key = "podSelector" if kind == "NetworkPolicy" else "selector"
            selected = pods_selected(doc["spec"][key].get("matchLabels", {}))
            if not selected:
                problems.append(f"{name_of(doc)}: selects no pod of this release")
            for rule in doc["spec"].get("ingress", []) if kind == "NetworkPolicy" else []:
                for port in rule.get("ports", []):
                    if isinstance(port.get("port"), str) and port["port"] not in port_names(selected):
                        problems.append(f"{name_of(doc)}: port {port['port']} is no named port of its pods")

    services = {svc["metadata"]["name"]: svc for svc in by_kind.get("Service", [])}
    for sts in by_kind.get("StatefulSet", []):
        problems += check_worker(sts, services)
    for deploy in by_kind.get("Deployment", []):
        for container in deploy["spec"]["template"]["spec"]["containers"]:
            url = env_of(container).get("PIONEER_DASHBOARD_API_URL")
            if url:
                match = re.fullmatch(r"http://([^:/]+):(\d+)", url)
                svc = services.get(match.group(1)) if match else None
                if not svc or int(match.group(2)) not in {p["port"] for p in svc["spec"]["ports"]}:
                    problems.append(f"{name_of(deploy)}: PIONEER_DASHBOARD_API_URL {url} is no Service port")
    for policy_doc in by_kind.get("NetworkPolicy", []):
        labels = policy_doc["spec"]["podSelector"].get("matchLabels", {})
        if labels.get("app.kubernetes.io/component") != "worker":
            continue
        peers = [peer for rule in policy_doc["spec"].get("ingress", []) for peer in rule.get("from", [])]
        components = {
            peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
            for peer in peers
        }
        if not {"dashboard", "worker"} <= components or any(peer == {} for peer in peers):
            problems.append(f"{name_of(policy_doc)}: worker API must admit the dashboard and workers only")
        if any(not rule.get("from") for rule in policy_doc["spec"].get("ingress", [])):
            problems.append(f"{name_of(policy_doc)}: a rule without `from` admits everyone")
    for ingress in by_kind.get("Ingress", []):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                svc = services.get(backend["name"])
                if not svc or backend["port"].get("name") not in {
                    p.get("name") for p in svc["spec"]["ports"]
                }:
                    problems.append(f"{name_of(ingress)}: backend {backend} is no Service port")
    accounts = {sa["metadata"]["name"] for sa in by_kind.get("ServiceAccount", [])}
    for doc in docs:
        if doc["kind"] in WORKLOADS and doc["kind"] != "Job":
            account = pod_template(doc)["spec"].get("serviceAccountName", "default")
            if account != "default" and account not in accounts:
                problems.append(f"{name_of(doc)}: ServiceAccount {account} is not rendered")
    for job in by_kind.get("Job", []):
        hooks = job["metadata"].get("annotations", {}).get("helm.sh/hook", "")
        if "pre-install" not in hooks or "pre-upgrade" not in hooks:
            problems.append(
                f"{name_of(job)}: the topics job must run before the release (pre-install/upgrade)"
            )
        if pod_template(job)["spec"].get("serviceAccountName"):
            problems.append(f"{name_of(job)}: a pre-install hook cannot use the release's ServiceAccount")
    return problems


def check_worker(sts: dict[str, Any], services: dict[str, dict[str, Any]]) -> list[str]:
    where = name_of(sts)
    problems: list[str] = []
    headless = services.get(sts["spec"]["serviceName"])
    if not headless or headless["spec"].get("clusterIP") != "None":
        problems.append(f"{where}: serviceName is not a rendered headless Service")
    elif not headless["spec"].get("publishNotReadyAddresses"):
        problems.append(f"{where}: headless Service hides starting workers from each other")
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    env = env_of(container)
    names = [e["name"] for e in container.get("env", [])]
    url = env.get("PIONEER_WORKER_CANONICAL_URL", "")
    if not url.startswith(f"http://$(POD_NAME).{sts['spec']['serviceName']}."):
        problems.append(
            f"{where}: canonical URL {url!r} is not the pod's DNS name under the headless Service"
        )
    if "POD_NAME" not in names or names.index("POD_NAME") > names.index("PIONEER_WORKER_CANONICAL_URL"):
        problems.append(f"{where}: POD_NAME must be defined before the canonical URL uses it")
    port = int(env.get("PIONEER_WORKER_WEB_PORT", "0"))
    if not url.endswith(f":{port}") or env.get("PIONEER_WORKER_WEB_HOST") != "0.0.0.0":
        problems.append(f"{where}: web port/host and canonical URL disagree")
    named = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    probe = container.get("readinessProbe", {}).get("httpGet", {})
    if named.get(probe.get("port"), probe.get("port")) != port:
        problems.append(f"{where}: readiness probe is not on the web port {port}")
    if sts["spec"]["replicas"] > int(env.get("PIONEER_TOPICS_PARTITIONS", "8")):
        problems.append(f"{where}: more workers than partitions")
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    data_dir = env.get("PIONEER_WORKER_DATA_DIR")
    claims = {c["metadata"]["name"] for c in sts["spec"].get("volumeClaimTemplates", [])}
    if env.get("PIONEER_WORKER_STORE") == "rocksdb" and mounts.get(data_dir) not in claims:
        problems.append(f"{where}: the data dir {data_dir} is not on a persistent volume claim")
    return problems


# --------------------------------------------------------------------------------------------- strimzi

# Hand-written from Strimzi's documentation (API reference of Kafka, KafkaNodePool, KafkaTopic, KafkaUser):
# required fields, types and enums of what this chart renders. It is a shape check, not Strimzi's schema.
_NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}
_CLUSTER_LABEL = {
    "type": "object",
    "required": ["labels"],
    "properties": {"labels": {"type": "object", "required": ["strimzi.io/cluster"]}},
}
STRIMZI_SHAPES: dict[str, dict[str, Any]] = {
    "Kafka": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "metadata": {"type": "object", "required": ["name"], "properties": {"name": _NAME}},
            "spec": {
                "type": "object",
                "required": ["kafka"],
                "not": {"anyOf": [{"required": ["zookeeper"]}]},
                "properties": {
                    "kafka": {
                        "type": "object",
                        "required": ["listeners"],
                        # with node pools, replicas and storage belong to the KafkaNodePool
                        "not": {"anyOf": [{"required": ["replicas"]}, {"required": ["storage"]}]},
                        "properties": {
                            "version": {"type": "string"},
                            "metadataVersion": {"type": "string"},
                            "listeners": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "required": ["name", "port", "type", "tls"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "name": {"type": "string", "pattern": "^[a-z0-9]{1,11}$"},
                                        "port": {
                                            "type": "integer",
                                            "minimum": 9092,
                                            "not": {"enum": [9404, 9999]},
                                        },
                                        "type": {
                                            "enum": [
                                                "internal",
                                                "route",
                                                "loadbalancer",
                                                "nodeport",
                                                "ingress",
                                                "cluster-ip",
                                            ]
                                        },
                                        "tls": {"type": "boolean"},
                                        "authentication": {
                                            "type": "object",
                                            "required": ["type"],
                                            "properties": {
                                                "type": {"enum": ["tls", "scram-sha-512", "oauth", "custom"]}
                                            },
                                        },
                                        "configuration": {"type": "object"},
                                        "networkPolicyPeers": {"type": "array"},
                                    },
                                },
                            },
                            "config": {
                                "type": "object",
                                "additionalProperties": {"type": ["string", "integer", "boolean", "number"]},
                            },
                            "authorization": {
                                "type": "object",
                                "required": ["type"],
                                "properties": {"type": {"enum": ["simple", "keycloak", "custom"]}},
                            },
                        },
                    },
                    "entityOperator": {
                        "type": "object",
                        "properties": {
                            "topicOperator": {"type": "object"},
                            "userOperator": {"type": "object"},
                        },
                    },
                },
            },
        },
    },
    "KafkaNodePool": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "metadata": {
                **_CLUSTER_LABEL,
                "required": ["name", "labels"],
                "properties": {**_CLUSTER_LABEL["properties"], "name": _NAME},
            },
            "spec": {
                "type": "object",
                "required": ["replicas", "roles", "storage"],
                "properties": {
                    "replicas": {"type": "integer", "minimum": 0},
                    "roles": {
                        "type": "array",
                        "minItems": 1,
                        "uniqueItems": True,
                        "items": {"enum": ["controller", "broker"]},
                    },
                    "resources": {"type": "object"},
                    "storage": {
                        "type": "object",
                        "required": ["type"],
                        "properties": {
                            "type": {"enum": ["jbod", "persistent-claim", "ephemeral"]},
                            "volumes": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "required": ["id", "type"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "id": {"type": "integer", "minimum": 0},
                                        "type": {"enum": ["persistent-claim", "ephemeral"]},
                                        "size": {"type": "string", "pattern": r"^[0-9]+([KMGTPE]i?)?$"},
                                        "class": {"type": "string"},
                                        "deleteClaim": {"type": "boolean"},
                                        "kraftMetadata": {"enum": ["shared"]},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
    "KafkaUser": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "metadata": {
                **_CLUSTER_LABEL,
                "required": ["name", "labels"],
                "properties": {**_CLUSTER_LABEL["properties"], "name": _NAME},
            },
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "authentication": {
                        "type": "object",
                        "required": ["type"],
                        "properties": {"type": {"enum": ["tls", "tls-external", "scram-sha-512"]}},
                    },
                    "authorization": {
                        "type": "object",
                        "required": ["type", "acls"],
                        "properties": {
                            "type": {"enum": ["simple"]},
                            "acls": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["resource", "operations"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "type": {"enum": ["allow", "deny"]},
                                        "host": {"type": "string"},
                                        "resource": {
                                            "type": "object",
                                            "required": ["type"],
                                            "additionalProperties": False,
                                            "properties": {
                                                "type": {
                                                    "enum": ["topic", "group", "cluster", "transactionalId"]
                                                },
                                                "name": {"type": "string"},
                                                "patternType": {"enum": ["literal", "prefix"]},
                                            },
                                        },
                                        "operations": {
                                            "type": "array",
                                            "minItems": 1,
                                            "items": {
                                                "enum": [
                                                    "Read",
                                                    "Write",
                                                    "Create",
                                                    "Delete",
                                                    "Alter",
                                                    "Describe",
                                                    "ClusterAction",
                                                    "AlterConfigs",
                                                    "DescribeConfigs",
                                                    "IdempotentWrite",
                                                    "All",
                                                ]
                                            },
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
    "KafkaTopic": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "metadata": {
                **_CLUSTER_LABEL,
                "required": ["name", "labels"],
                "properties": {**_CLUSTER_LABEL["properties"], "name": _NAME},
            },
            "spec": {
                "type": "object",
                "required": ["partitions", "replicas"],
                "additionalProperties": False,
                "properties": {
                    "topicName": {"type": "string", "pattern": r"^[a-zA-Z0-9._-]{1,249}$"},
                    "partitions": {"type": "integer", "minimum": 1},
                    "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
                    "config": {
                        "type": "object",
                        "additionalProperties": {"type": ["string", "integer", "boolean", "number"]},
                    },
                },
            },
        },
    },
}


def strimzi(crs: str) -> list[str]:
    docs = load_docs(crs)
    problems = monitoring([d for d in docs if d["apiVersion"].startswith(MONITORING_GROUP)])
    docs = [d for d in docs if d["apiVersion"].startswith(STRIMZI_GROUP)]
    clusters = {d["metadata"]["name"] for d in docs if d["kind"] == "Kafka"}
    pools = [d for d in docs if d["kind"] == "KafkaNodePool"]
    for doc in docs:
        shape = STRIMZI_SHAPES.get(doc["kind"])
        if shape is None:
            problems.append(f"{name_of(doc)}: no shape known for this Strimzi kind")
            continue
        if doc["apiVersion"] not in {"kafka.strimzi.io/v1", "kafka.strimzi.io/v1beta2"}:
            problems.append(
                f"{name_of(doc)}: apiVersion {doc['apiVersion']} is not served by Strimzi >= 0.49"
            )
        for error in jsonschema.Draft7Validator(shape).iter_errors(doc):
            path = "/".join(str(p) for p in error.absolute_path)
            problems.append(f"{name_of(doc)}: {path}: {error.message}")
        cluster = doc.get("metadata", {}).get("labels", {}).get("strimzi.io/cluster")
        if doc["kind"] != "Kafka" and cluster not in clusters:
            problems.append(f"{name_of(doc)}: strimzi.io/cluster={cluster} names no Kafka of this release")
    roles = {role for pool in pools for role in pool["spec"]["roles"]}
    if clusters and roles != {"controller", "broker"}:
        problems.append("the node pools of the Kafka lack a KRaft role: need both controller and broker")
    brokers = sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"])
    for topic in (d for d in docs if d["kind"] == "KafkaTopic"):
        if topic["spec"]["replicas"] > brokers:
            problems.append(f"{name_of(topic)}: {topic['spec']['replicas']} replicas on {brokers} brokers")
        if "cleanup.policy" not in topic["spec"].get("config", {}) and "retention.ms" not in topic[
            "spec"
        ].get("config", {}):
            problems.append(f"{name_of(topic)}: neither retention nor compaction")
    print(f"{len(docs)} Strimzi resources have the expected shape")
    return problems


# ------------------------------------------------------------------------------------------ monitoring

# Hand-written from the Prometheus operator's API reference: what this chart renders of its
# ServiceMonitor and PodMonitor (its CRDs come from no package registry reachable here).
_ENDPOINT = {
    "type": "object",
    "required": ["port"],
    "properties": {
        "port": {"type": "string"},
        "path": {"type": "string", "pattern": "^/"},
        "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
        "scheme": {"enum": ["http", "https"]},
    },
}
MONITORING_SHAPES: dict[str, dict[str, Any]] = {
    kind: {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "metadata": {"type": "object", "required": ["name"], "properties": {"name": _NAME}},
            "spec": {
                "type": "object",
                "required": ["selector", endpoints],
                "properties": {
                    "selector": {
                        "type": "object",
                        "required": ["matchLabels"],
                        "properties": {"matchLabels": {"type": "object", "minProperties": 1}},
                    },
                    endpoints: {"type": "array", "minItems": 1, "items": _ENDPOINT},
                    "namespaceSelector": {"type": "object"},
                },
            },
        },
    }
    for kind, endpoints in (("ServiceMonitor", "endpoints"), ("PodMonitor", "podMetricsEndpoints"))
}


def monitoring(docs: list[dict[str, Any]]) -> list[str]:
    problems = []
    for doc in docs:
        shape = MONITORING_SHAPES.get(doc["kind"])
        if shape is None:
            problems.append(f"{name_of(doc)}: no shape known for this Prometheus-operator kind")
            continue
        for error in jsonschema.Draft7Validator(shape).iter_errors(doc):
            path = "/".join(str(p) for p in error.absolute_path)
            problems.append(f"{name_of(doc)}: {path}: {error.message}")
    return problems


# --------------------------------------------------------------------------------------------- compose


def compose(path: str) -> list[str]:
    with open(path, encoding="utf-8") as handle:
        spec = yaml.safe_load(handle)
    services: dict[str, Any] = spec["services"]
    declared = set(spec.get("volumes") or {})
    problems: list[str] = []
    for name, service in services.items():
        for target, dep in (service.get("depends_on") or {}).items():
            if target not in services:
                problems.append(f"{name}: depends on unknown service {target}")
                continue
            condition = dep.get("condition")
            if condition == "service_healthy" and "healthcheck" not in services[target]:
                problems.append(f"{name}: waits for {target} to be healthy, which has no healthcheck")
            restart = str(services[target].get("restart", "no"))
            if condition == "service_completed_successfully" and not restart.startswith(("no", "on-failure")):
                problems.append(f"{name}: waits for {target} to complete, which restarts forever")
            if services[target].get("profiles") and not service.get("profiles"):
                problems.append(f"{name}: depends on {target}, which only runs in a profile")
        one_shot = str(service.get("restart", "")).startswith("on-failure")
        if not one_shot and "healthcheck" not in service:
            problems.append(f"{name}: long-running service without healthcheck")
        for volume in service.get("volumes", []):
            # `${VAR:-default}:/target[:mode]` names `default` unless VAR is set
            default = re.match(r"\$\{[A-Z_]+:-([^}]*)\}:", str(volume))
            source = default.group(1) if default else str(volume).split(":", 1)[0]
            if source and not source.startswith((".", "/", "~")) and source not in declared:
                problems.append(f"{name}: volume {source} is not declared")
    return problems


# ------------------------------------------------------------------------------------------ docs-values


def docs_values(out_dir: str, *docs: str) -> list[str]:
    """`<!-- validate: helm-values NAME -->` or `<!-- validate: nebari-helm-extension NAME -->` before a
    fenced yaml block: that block (or its helm_extensions entry's overrides) becomes OUT_DIR/NAME.yaml."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    pattern = re.compile(
        r"<!-- validate: (helm-values|nebari-helm-extension) ([\w-]+) -->\s*```yaml\n(.*?)```", re.S
    )
    count = 0
    for doc in docs:
        text = Path(doc).read_text(encoding="utf-8")
        for kind, name, block in pattern.findall(text):
            values = yaml.safe_load(block)
            if kind == "nebari-helm-extension":
                (entry,) = values["helm_extensions"]
                for key in ("name", "repository", "chart", "version"):
                    if not entry.get(key):
                        problems.append(f"{doc} {name}: helm_extensions entry lacks {key}")
                values = entry.get("overrides", {})
            (out / f"{name}.yaml").write_text(yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
            print(f"{doc}: {kind} {name}")
            count += 1
    if not count:
        problems.append("no values blocks marked for validation in the docs")
    return problems


# ------------------------------------------------------------------------------------- context, wheel


def _dockerignore_patterns(repo: Path) -> list[tuple[bool, re.Pattern[str]]]:
    patterns = []
    for raw in (repo / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        line = line.lstrip("!").strip("/")
        regex = ""
        i = 0
        while i < len(line):
            if line.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif line.startswith("**", i):
                regex, i = regex + ".*", i + 2
            else:
                regex += "[^/]*" if line[i] == "*" else "[^/]" if line[i] == "?" else re.escape(line[i])
                i += 1
        patterns.append((negate, re.compile(regex + "$")))
    return patterns


def _ignored(path: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parents decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for negate, regex in patterns:
        if any(regex.match(c) for c in candidates):
            ignored = not negate
    return ignored


def context(repo_dir: str, out_dir: str) -> list[str]:
    repo, out = Path(repo_dir), Path(out_dir)
    patterns = _dockerignore_patterns(repo)
    copied = 0
    for path in sorted(repo.rglob("*")):
        rel = path.relative_to(repo).as_posix()
        if rel.startswith((".git/", ".venv/")) or path.is_dir() or _ignored(rel, patterns):
            continue
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, out / rel)
        copied += 1
    problems = []
    dockerfile = (repo / "Dockerfile").read_text(encoding="utf-8")
    for line in dockerfile.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            for source in line.split()[1:-1]:
                if not (out / source).exists():
                    problems.append(f"Dockerfile: COPY {source} is not in the build context (.dockerignore)")
    print(f"build context: {copied} files")
    return problems


def wheel(path: str) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        entry_points = next((archive.read(n).decode() for n in names if n.endswith("entry_points.txt")), "")
    problems = [
        f"wheel lacks {needed}"
        for needed in (
            "pioneer_telemetry/cli.py",
            "pioneer_base/kafka_dist/pom.xml",
            "streams/worker.py",
            "collector/cli.py",
            "dashboard/__init__.py",
            "simulator/simulate.py",
        )
        if needed not in names
    ]
    if "pioneer-telemetry = pioneer_telemetry.cli:main" not in entry_points:
        problems.append("wheel has no pioneer-telemetry console script")
    print(f"wheel: {len(names)} files")
    return problems


COMMANDS = {
    "split": split,
    "policy": policy,
    "strimzi": strimzi,
    "compose": compose,
    "docs-values": docs_values,
    "context": context,
    "wheel": wheel,
}


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    problems = COMMANDS[argv[1]](*argv[2:])
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
