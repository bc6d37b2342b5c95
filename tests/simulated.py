"""Simulated users in two Kubernetes namespaces, and what the read API must report about them.

`pioneer-telemetry simulate` puts all its users in one namespace (`PIONEER_SIMULATOR_NAMESPACE`), so
each namespace is one run, with its own seed. Usernames repeat across runs (alice works in both), which
is what a namespace filter must tell apart. The expected numbers are counted from the simulator's
model (`Simulation.lines`, what its ground-truth file counts too), never from the pipeline's output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulator.settings import SimulatorSettings
from simulator.simulate import Simulation
from tests.clock import epoch_ms, iso, recent_hour

# Three days back, older than the wall clock's last 24 h: the worker still holds these minutes (its
# retention follows stream time), so the API and the pages must offer them by the minute.
_START = recent_hour(72)
START = iso(_START)
START_MS = epoch_ms(_START)
MINUTES = 6
NAMESPACES = {"dev": (4, 7), "research": (3, 8)}  # namespace -> (users, seed)
EXECUTE = "CellExecuteEvent"


@dataclass(frozen=True, slots=True)
class Fact:
    """One simulated pioneer event, as the API identifies it."""

    namespace: str
    minute_ms: int
    user: str  # the pod's user slug, which the pipeline reports
    path: str
    session: str
    name: str
    error: str | None  # of a failed execution


@dataclass(frozen=True)
class Simulated:
    log_dir: Path
    truths: dict[str, dict[str, Any]]  # namespace -> the simulator's ground-truth file
    facts: list[Fact]

    @property
    def total(self) -> int:
        return len(self.facts)

    def where(
        self,
        namespace: str | None = None,
        user: str | None = None,
        path: str | None = None,
        from_ms: int = START_MS,
        to_ms: int = START_MS + MINUTES * 60_000,
    ) -> list[Fact]:
        """The facts of a namespace, user and notebook path (None: any) in [from_ms, to_ms)."""
        return [
            f
            for f in self.facts
            if (namespace is None or f.namespace == namespace)
            and (user is None or f.user == user)
            and (path is None or f.path == path)
            and from_ms <= f.minute_ms < to_ms
        ]


def simulate(out_dir: Path) -> Simulated:
    """Every namespace's pod logs (kubelet-named files, which carry the namespace) into `out_dir`."""
    truths, facts = {}, []
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIONEER_")}
    for namespace, (users, seed) in NAMESPACES.items():
        truth = out_dir / f"truth-{namespace}.json"
        subprocess.run(
            [sys.executable, "-m", "pioneer_telemetry", "simulate", "--users", str(users), "--seed", str(seed),
             "--duration", str(MINUTES * 60), "--rate", "0", "--out-dir", str(out_dir / "logs"),
             "--truth", str(truth), "--start", START],
            env=env | {"PIONEER_SIMULATOR_NAMESPACE": namespace}, check=True, capture_output=True,
        )  # fmt: skip
        truths[namespace] = json.loads(truth.read_text())
        settings = SimulatorSettings(
            users=users, seed=seed, duration=MINUTES * 60, start=START, namespace=namespace
        )
        facts += facts_of(settings)
    return Simulated(out_dir / "logs", truths, facts)


def facts_of(settings: SimulatorSettings) -> list[Fact]:
    """The events a simulation writes, from its model (what its truth file counts too)."""
    return [
        Fact(settings.namespace, line.ms - line.ms % 60_000, line.pod.slug, line.event.path,
             line.event.session_id, line.event.name, line.event.error)
        for line in Simulation(settings).lines()
        if line.event is not None
    ]  # fmt: skip


def counts(facts: Iterable[Fact]) -> dict[str, Any]:
    """What the API reports about these events (a window's, a user's, a notebook's)."""
    facts = list(facts)
    executions = [f for f in facts if f.name == EXECUTE]
    errors = Counter(f.error for f in executions if f.error)
    return {
        "events": len(facts),
        "events_by_name": dict(sorted(Counter(f.name for f in facts).items())),
        "active_sessions": len({f.session for f in facts}),
        "executions": len(executions),
        "failures": errors.total(),
        "failures_by_error": dict(sorted(errors.items())),
    }


def distinct(facts: Iterable[Fact]) -> dict[str, int]:
    """Distinct users and notebooks (a notebook is a user's path)."""
    facts = list(facts)
    return {
        "active_users": len({f.user for f in facts}),
        "active_notebooks": len({(f.user, f.path) for f in facts}),
    }
