"""What the collector does to a line before it leaves the node: keep only pioneer lines, drop secrets."""

from __future__ import annotations

import fnmatch
from collections.abc import Collection
from typing import Any

import orjson

from streams.parser import locate_event
from streams.privacy import PrivacyPolicy, mentions_secret_word, redact_event, scrub_text

EVENT_MARKER = "eventDetail"
MAX_LOG_CHARS = 256 * 1024  # a longer line is shrunk (its content dropped), then cut: Kafka's limit is near
# At the edge only secrets go: user content stays for the parser, which drops it unless capture is on.
EDGE_POLICY = PrivacyPolicy(capture_content=True)
CONTENT_FREE_POLICY = PrivacyPolicy(capture_content=False)


def may_be_event(log: str) -> bool:
    """Cheap pre-filter: every pioneer event line, in any format, contains the envelope's key."""
    return EVENT_MARKER in log


def edge_line(log: str, max_chars: int) -> tuple[str, int | None]:
    """What of a line leaves the node: redacted, shrunk when oversized, and cut as a last resort (Kafka
    would refuse it; the parser dead-letters it), with the length it was cut from."""
    text = redact_line(log)
    if len(text) > max_chars:
        text = shrink_line(text)
    if len(text) > max_chars:
        return text[:max_chars], len(text)
    return text, None


def redact_line(log: str) -> str:
    """The line with secret-looking keys and the non-allowlisted environment removed from its event.

    Only lines that mention `environ` or a secret-looking key pay for a decode. JSON and dict reprs
    (`command_line_exporter`) are decoded as the parser decodes them; a line that does not decode
    (truncated) is scrubbed as text instead, so nothing secret passes either way.
    """
    if "environ" not in log and not mentions_secret_word(log):
        return log
    return _rewrite_event(log, EDGE_POLICY)


def shrink_line(log: str) -> str:
    """An oversized line (a whole notebook in `notebookContent`, say) without its user content, which
    Kafka could not carry and the parser would drop by default anyway; the event itself still counts."""
    return _rewrite_event(log, CONTENT_FREE_POLICY)


def _rewrite_event(log: str, policy: PrivacyPolicy) -> str:
    """The line with its event redacted and written back as JSON, at the same place (the prefix and
    any text after the event are kept), so it parses exactly as the original would. An event that does
    not decode is scrubbed as text: the parser could not count it either."""
    located = locate_event(log)
    if located is None:
        return scrub_text(log)
    start, end, event = located
    return log[:start] + orjson.dumps(redact_event(event, policy)).decode() + log[end:]


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
