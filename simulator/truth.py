"""Ground truth of a simulation, counted from the model's events as they are emitted (never from the output).

Tests and benchmarks compare what the pipeline computes from the logs against this file.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from simulator.records import Event, LogLine, Persona
    from simulator.settings import SimulatorSettings

WINDOW_MS = 60_000
EXECUTE = "CellExecuteEvent"


def iso_utc(ms: int) -> str:
    """`2026-11-26T18:15:00Z`: how window starts and times are keyed in the truth."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S") + "Z"


class _Window:
    __slots__ = ("by_event", "executions", "failures", "notebooks", "sessions", "users")

    def __init__(self) -> None:
        self.by_event: Counter[str] = Counter()
        self.users: set[str] = set()
        self.sessions: set[str] = set()
        self.notebooks: set[tuple[str, str]] = set()
        self.executions = 0
        self.failures = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "total": self.by_event.total(),
            "by_event": _sorted(self.by_event),
            "users": len(self.users),
            "sessions": len(self.sessions),
            "notebooks": len(self.notebooks),
            "executions": self.executions,
            "failures": self.failures,
        }


class Simulated(Protocol):
    """What the truth reads of a simulation (`simulate.Simulation`): its settings, start and users."""

    @property
    def settings(self) -> SimulatorSettings: ...

    @property
    def start_ms(self) -> int: ...

    @property
    def personas(self) -> list[Persona]: ...


class Truth:
    """Counts per event name, user, session, notebook and 1-minute window of log time; executions and failures.

    `add` only counts (user, event) combinations per window, which keeps it cheap on the hot path; the
    aggregates are derived from those in `as_dict`. A notebook is a (user, path) pair: every user has their
    own `Untitled.ipynb`.
    """

    def __init__(self, simulation: Simulated) -> None:
        settings = simulation.settings
        self._header = {
            "seed": settings.seed,
            "start": iso_utc(simulation.start_ms),
            "log_format": settings.log_format,
            "framing": str(settings.framing),
            "pods": {
                persona.pod.username: {
                    "slug": persona.pod.slug,
                    "pod": persona.pod.name,
                    "namespace": persona.pod.namespace,
                    "container": persona.pod.container,
                    "container_id": persona.pod.container_id,
                    "log_file": persona.pod.log_file,
                }
                for persona in simulation.personas
            },
        }
        self.secret_values = sorted(
            {value for persona in simulation.personas for value in persona.secrets.values()}
        )
        self.lines = 0
        self.server_lines = 0
        self.total = 0
        self.last_ms: int | None = None
        self._windows: dict[int, Counter[tuple[str, Event]]] = {}
        self._window_start = -1
        self._window: Counter[tuple[str, Event]] = Counter()

    def add(self, line: LogLine) -> None:
        self.lines += 1
        self.last_ms = line.ms
        if line.event is None:
            self.server_lines += 1
            return
        self.total += 1
        start = line.ms - line.ms % WINDOW_MS
        if start != self._window_start:  # lines come in time order, so this is rare
            self._window_start = start
            self._window = self._windows.setdefault(start, Counter())
        self._window[line.pod.username, line.event] += 1

    def as_dict(self) -> dict[str, object]:
        by_event: Counter[str] = Counter()
        by_user: Counter[str] = Counter()
        by_session: Counter[str] = Counter()
        by_notebook: defaultdict[str, Counter[str]] = defaultdict(Counter)
        failures_by_error: Counter[str] = Counter()
        executions_by_user: defaultdict[str, Counter[str]] = defaultdict(Counter)
        executions_by_notebook: defaultdict[str, defaultdict[str, Counter[str]]] = defaultdict(
            lambda: defaultdict(Counter)
        )
        windows: dict[int, _Window] = {}
        for start, counts in self._windows.items():
            window = windows[start] = _Window()
            for (user, event), n in counts.items():
                by_event[event.name] += n
                by_user[user] += n
                by_session[event.session_id] += n
                by_notebook[user][event.path] += n
                window.by_event[event.name] += n
                window.users.add(user)
                window.sessions.add(event.session_id)
                window.notebooks.add((user, event.path))
                if event.name != EXECUTE:
                    continue
                outcome = ("executions", "failures") if event.error else ("executions",)
                for key in outcome:
                    executions_by_user[user][key] += n
                    executions_by_notebook[user][event.path][key] += n
                window.executions += n
                if event.error:
                    window.failures += n
                    failures_by_error[event.error] += n
        return {
            **self._header,
            "end": None if self.last_ms is None else iso_utc(self.last_ms),
            "lines": self.lines,
            "server_lines": self.server_lines,
            "total": self.total,
            "by_event": _sorted(by_event),
            "by_user": _sorted(by_user),
            "by_session": _sorted(by_session),
            "by_notebook": {user: _sorted(paths) for user, paths in sorted(by_notebook.items())},
            "executions": by_event[EXECUTE],
            "failures": failures_by_error.total(),
            "failures_by_error": _sorted(failures_by_error),
            "executions_by_user": {user: _outcomes(c) for user, c in sorted(executions_by_user.items())},
            "executions_by_notebook": {
                user: {path: _outcomes(c) for path, c in sorted(paths.items())}
                for user, paths in sorted(executions_by_notebook.items())
            },
            "windows": {iso_utc(start): window.as_dict() for start, window in sorted(windows.items())},
            "secret_values": self.secret_values,
        }

    def write(self, path: Path) -> None:
        """Replace `path` atomically, so a reader never sees half a file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(json.dumps(self.as_dict(), ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(partial, path)


def _sorted(counter: Counter[str]) -> dict[str, int]:
    return dict(sorted(counter.items()))


def _outcomes(counter: Counter[str]) -> dict[str, int]:
    return {"executions": counter["executions"], "failures": counter["failures"]}
