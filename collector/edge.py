"""What the collector does to a line before it leaves the node: keep only pioneer lines, drop secrets."""

from __future__ import annotations

import fnmatch
from collections.abc import Collection
from typing import Any

import orjson

from streams.logformat import find_event_start
from streams.privacy import PrivacyPolicy, mentions_secret_word, redact_event, scrub_text

EVENT_MARKER = "eventDetail"
# At the edge only secrets go: user content stays for the parser, which drops it unless capture is on.
EDGE_POLICY = PrivacyPolicy(capture_content=True)
CONTENT_FREE_POLICY = PrivacyPolicy(capture_content=False)


def may_be_event(log: str) -> bool:
    """Cheap pre-filter: every pioneer event line, in any format, contains the envelope's key."""
    return EVENT_MARKER in log


def redact_line(log: str) -> str:
    """The line with secret-looking keys and the non-allowlisted environment removed from its event.

    Only lines that mention `environ` or a secret-looking key pay for a decode; an event that does not
    decode (truncated, dict repr) is scrubbed as text instead, so nothing secret passes either way.
    """
    if "environ" not in log and not mentions_secret_word(log):
        return log
    return _rewrite_event(log, EDGE_POLICY)


def shrink_line(log: str) -> str:
    """An oversized line (a whole notebook in `notebookContent`, say) without its user content, which
    Kafka could not carry and the parser would drop by default anyway; the event itself still counts."""
    return _rewrite_event(log, CONTENT_FREE_POLICY)


def _rewrite_event(log: str, policy: PrivacyPolicy) -> str:
    start = find_event_start(log.encode())  # byte offset == char offset: event lines are ASCII JSON
    if start < 0 or not log.isascii():
        return scrub_text(log)
    try:
        event = orjson.loads(log[start:])
    except orjson.JSONDecodeError:
        return scrub_text(log)
    if not isinstance(event, dict):
        return scrub_text(log)
    return log[:start] + orjson.dumps(redact_event(event, policy)).decode()


class PodFilter:
    """Which pods' lines are collected: namespace, pod-name glob and container, when they are known."""

    def __init__(self, namespaces: Collection[str], pod_glob: str, containers: Collection[str]) -> None:
        self.namespaces = frozenset(namespaces)
        self.pod_glob = pod_glob
        self.containers = frozenset(containers)
        self._decided: dict[tuple[Any, Any, Any], bool] = {}  # asked for every line; a node has few pods

    def accepts(self, kubernetes: dict[str, Any]) -> bool:
        """Unknown metadata (plain files, stdin) is accepted: the user chose that source explicitly."""
        pod = (kubernetes.get("namespace_name"), kubernetes.get("pod_name"), kubernetes.get("container_name"))
        decision = self._decided.get(pod)
        if decision is None:
            if len(self._decided) > 10_000:
                self._decided.clear()
            decision = self._decided[pod] = self._decide(*pod)
        return decision

    def _decide(self, namespace: Any, pod: Any, container: Any) -> bool:
        if namespace is not None and self.namespaces and namespace not in self.namespaces:
            return False
        if pod is not None and not fnmatch.fnmatchcase(pod, self.pod_glob):
            return False
        return container is None or not self.containers or container in self.containers
