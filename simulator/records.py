"""The simulator's data: a user's pod, the lines it writes and the events behind them. The model
(simulate.py) makes them; the sinks (output.py) and the ground truth (truth.py) read them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import NamedTuple

_NOT_ALNUM = re.compile(r"[^a-z0-9]+")
_OBJECT_NAME = re.compile(r"[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?")


def safe_slug(name: str) -> str:
    """kubespawner 7's "safe" slug: a valid DNS label passes through, anything else is stripped and hashed.

    `alice` -> `alice`, `user@email.com` -> `user-email-com---0925f997`.
    """
    if "--" not in name and _OBJECT_NAME.fullmatch(name):
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    stem = _NOT_ALNUM.sub("-", name.lower()).lstrip("-")[:21].rstrip("-")
    if stem and not ("a" <= stem[0] <= "z"):
        stem = "x-" + stem[:19]
    return f"{stem or 'x'}---{digest}"


@dataclass(frozen=True, slots=True)
class Pod:
    """A user's single-user server as the kubelet and Fluent Bit's kubernetes filter see it."""

    username: str
    namespace: str
    container_id: str  # 64 hex digits
    container: str = "notebook"
    slug: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "slug", safe_slug(self.username))

    @property
    def name(self) -> str:
        return f"jupyter-{self.slug}"

    @property
    def log_file(self) -> str:
        """The file name under `/var/log/containers/`."""
        return f"{self.name}_{self.namespace}_{self.container}-{self.container_id}.log"


class Event(NamedTuple):
    """What the ground truth needs to know about one pioneer event, taken from the model rather than the output."""

    name: str
    session_id: str
    path: str
    error: str | None  # errorName of a failed CellExecuteEvent


class LogLine(NamedTuple):
    """One line a user pod writes."""

    ms: int  # the line's time as the pipeline reads it, ms since the epoch: the server clock when it was
    #          logged (its asctime), or, for a command_line_exporter line, when the runtime read it
    ns: int  # when the container runtime read it (CRI/docker timestamp), ns since the epoch
    pod: Pod
    text: str
    event: Event | None  # None for Jupyter Server's own lines


class Persona(NamedTuple):
    """A simulated user's fixed identity: the pod and the secrets in its environment."""

    pod: Pod
    secrets: dict[str, str]
