"""Who produced a log line: pod metadata, and the JupyterHub user behind it.

Events carry no username, so it comes from Kubernetes: the pod's annotation (raw username), its label
(slug), its name (`jupyter-<slug>`), or, for files read outside a cluster, the log file's name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

USERNAME_KEY = "hub.jupyter.org/username"

# kubespawner names user pods `jupyter-<user slug>` and named servers `jupyter-<user slug>--<server>`;
# its "safe" slugs end in `---<8 hex>` (e.g. `user-email-com---1a2b3c4d`), which the split must keep.
_USER_POD = re.compile(r"jupyter-(?P<user>.+?---[0-9a-f]{8}|.+?)(?:--(?!-).+)?")
# /var/log/containers/<pod>_<namespace>_<container>-<64 hex container id>.log
_CONTAINER_LOG = re.compile(r"(?P<pod>[^_]+)_(?P<namespace>[^_]+)_(?P<container>.+)-[0-9a-f]{64}\.log")
# /var/log/pods/<namespace>_<pod>_<pod uid>/<container>/<n>.log
_POD_LOG_DIR = re.compile(r"(?P<namespace>[^_]+)_(?P<pod>[^_]+)_[0-9a-f-]+")


def user_from_pod_name(pod: str) -> str | None:
    """The user slug in a kubespawner pod name, or None for pods that are not user servers."""
    match = _USER_POD.fullmatch(pod)
    return match.group("user") if match else None


@dataclass(frozen=True)
class PodMeta:
    """The Kubernetes origin of a stream. `user` is derived from the rest unless given."""

    pod: str | None = None
    namespace: str | None = None
    container: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None

    def __post_init__(self) -> None:
        if self.user is None:
            user = self.annotations.get(USERNAME_KEY) or self.labels.get(USERNAME_KEY)
            if not user and self.pod:
                user = user_from_pod_name(self.pod)
            object.__setattr__(self, "user", user or None)

    @classmethod
    def from_fluent_bit(cls, kubernetes: Mapping[str, Any]) -> PodMeta:
        """From the `kubernetes` object Fluent Bit's kubernetes filter adds to each record."""

        def text(key: str) -> str | None:
            value = kubernetes.get(key)
            return value if isinstance(value, str) else None

        def strings(key: str) -> dict[str, str]:
            value = kubernetes.get(key)
            if not isinstance(value, Mapping):
                return {}
            return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}

        return cls(
            pod=text("pod_name"),
            namespace=text("namespace_name"),
            container=text("container_name"),
            labels=strings("labels"),
            annotations=strings("annotations"),
        )

    @classmethod
    def from_log_path(cls, path: str | PurePath) -> PodMeta:
        """From a kubelet log file name; for any other file, the user is the name up to its first dot."""
        path = PurePath(path)
        match = _CONTAINER_LOG.fullmatch(path.name)
        if match:
            return cls(match["pod"], match["namespace"], match["container"])
        match = _POD_LOG_DIR.fullmatch(path.parent.parent.name) if path.suffix == ".log" else None
        if match and path.stem.isdigit():
            return cls(match["pod"], match["namespace"], path.parent.name)
        return cls(user=path.name.split(".", 1)[0] or None)
