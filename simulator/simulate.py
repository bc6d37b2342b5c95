"""Simulated jupyterlab-pioneer pod logs: users with sessions and notebooks, logged the way Nebari logs them.

`Simulation.lines()` yields the lines of all user pods in time order; `run()` frames them as the kubelet would,
writes them to sinks and keeps the ground truth. Randomness comes only from `random.Random` seeded with the
seed and the user, so a seed and a start time fix the output byte for byte.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import logging
import random
import re
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING

from simulator.corpus import (
    CODE,
    ERRORS,
    KERNEL_TCP_WARNING,
    MARKDOWN,
    NEW_NOTEBOOK_DIRS,
    NOTEBOOK_PATHS,
    PING_TIMEOUT_WARNING,
    SECRET_VARIABLES,
    USERNAMES,
    KernelError,
    ServerLog,
    csv_block,
    environ,
    ipython_traceback,
    server_chatter,
    startup,
)
from simulator.output import frame
from simulator.records import Event, LogLine, Persona, Pod
from simulator.settings import Exporter, SimulatorSettings
from simulator.truth import Truth

if TYPE_CHECKING:
    from simulator.output import Sink

# Where Nebari's exporter logs from: `logger.info(json.dumps(data))` on line 20 of its config template. traitlets
# executes that file without a `__name__`, so `logging.getLogger(__name__)` gets `builtins.__name__`.
EXPORTER_FILE = "/etc/jupyter/jupyter_jupyterlab_pioneer_config.py"
EXPORTER_LINE = 20
EXPORTER_FUNCTION = "my_custom_exporter"
EXPORTER_LOGGER = "builtins"

DEFAULT_DURATION = 600.0
"""Simulated seconds of an unpaced run that names neither a duration nor an event count."""

ERROR_RATE = 0.2  # share of code snippets that raise
FIX_RATE = 0.5  # share of failures the user fixes and re-runs right away
TYPO_RATE = 0.03  # share of keystrokes that are typos, corrected with a backspace
COMPLETION_RATE = 0.5  # share of names of 5+ characters completed with Tab after a few keys
CHATTER_RATE = 0.05  # Jupyter Server lines per pioneer event, besides those tied to actions
AUTOSAVE_MS = 120_000  # JupyterLab's default autosave interval
WEEK_MS = 7 * 24 * 3600 * 1000

# Share of users at their desk by UTC hour (weekdays); weekends are quieter still.
_HOURLY_PRESENCE = (
    *(0.02,) * 7,
    *(0.15, 0.5, 0.9, 1.0, 1.0, 0.6, 0.8, 1.0, 1.0, 0.9, 0.35),
    *(0.2, 0.15, 0.1, 0.08, 0.05, 0.03),
)
_WEEKEND_PRESENCE = 0.2


def username(index: int) -> str:
    """The index-th simulated user name; names repeat with a number once the list runs out (`alice2`)."""
    base = USERNAMES[index % len(USERNAMES)]
    rounds = index // len(USERNAMES)
    if not rounds:
        return base
    local, at, domain = base.partition("@")
    return f"{local}{rounds + 1}{at}{domain}"


def presence(ms: int) -> float:
    """Probability that a user is at their desk at this moment, for the office-hours rhythm."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    share = _HOURLY_PRESENCE[moment.hour]
    return share * _WEEKEND_PRESENCE if moment.weekday() >= 5 else share


class Simulation:
    """The users of one simulated Nebari deployment and the time-ordered log lines of their pods."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self.start = settings.start or datetime.now(UTC)
        self.start_ms = int(self.start.timestamp() * 1000)
        self.personas = [self._persona(username(i)) for i in range(settings.users)]

    def _persona(self, name: str) -> Persona:
        rng = random.Random(f"{self.settings.seed}/{name}/pod")
        pod = Pod(name, self.settings.namespace, f"{rng.getrandbits(256):064x}")
        return Persona(pod, {variable: f"{rng.getrandbits(128):032x}" for variable in SECRET_VARIABLES})

    @property
    def end_ms(self) -> int | None:
        """Lines are logged before this time; None when the run is bounded by events or an interrupt only."""
        duration = self.settings.duration
        paced = self.settings.rate or self.settings.realtime
        if duration is None and not paced and self.settings.events is None:
            duration = DEFAULT_DURATION
        return None if duration is None else self.start_ms + int(duration * 1000)

    def lines(self) -> Iterator[LogLine]:
        """All pods' lines merged in the order the runtime timestamps them, within the configured limits."""
        streams: list[Iterator[LogLine]] = [
            _User(persona, self.settings, self.start_ms).lines() for persona in self.personas
        ]
        end_ms = self.end_ms
        if end_ms is not None:
            streams = [itertools.takewhile(lambda line: line.ms < end_ms, stream) for stream in streams]
        merged = heapq.merge(*streams, key=itemgetter(1))
        limit = self.settings.events
        if limit is None:
            yield from merged
            return
        events = 0
        for line in merged:
            yield line
            if line.event is not None:
                events += 1
                if events == limit:
                    return


def run(settings: SimulatorSettings, sinks: Sequence[Sink], truth_path: Path | None = None) -> Truth:
    """Frame every line, hand it to the sinks (paced when `settings.rate` is set) and keep the ground truth.

    Sinks are flushed before every pause, so a tailer sees each line when it is due. The truth is rewritten
    every `truth_interval` seconds and at the end (also on Ctrl-C), each time after the sinks are flushed,
    so it never counts lines they have not written.
    """
    simulation = Simulation(settings)
    truth = Truth(simulation)
    framing, rate = settings.framing, settings.rate
    writers = [sink.write for sink in sinks]
    started = time.monotonic()
    next_truth = started + settings.truth_interval
    events = 0
    with contextlib.ExitStack() as cleanup:
        if truth_path is not None:
            cleanup.callback(truth.write, truth_path)  # runs last
        for sink in sinks:
            cleanup.callback(sink.close)
        for line in simulation.lines():
            delay = 0.0
            if settings.realtime:
                delay = started + (line.ms - simulation.start_ms) / 1000 - time.monotonic()
            elif rate and line.event is not None:
                delay = started + events / rate - time.monotonic()
                events += 1
            if delay > 0:
                for sink in sinks:
                    sink.flush()
                time.sleep(delay)
            framed = frame(line.text, line.ns, framing)
            for write in writers:
                write(line, framed)
            truth.add(line)
            if truth_path is not None and time.monotonic() >= next_truth:
                for sink in sinks:
                    sink.flush()
                truth.write(truth_path)
                next_truth = time.monotonic() + settings.truth_interval
    return truth


def _utf16_len(text: str) -> int:
    """Length in UTF-16 code units: CodeMirror's positions (an emoji counts 2)."""
    return len(text) if text.isascii() else len(text.encode("utf-16-le")) // 2


_encode = json.JSONEncoder().encode  # json.dumps' defaults, without its per-call dispatch
_TOKENS = re.compile(r"\w+|\W", re.UNICODE)


class _UTCFormatter(logging.Formatter):
    """The stock Formatter in a TZ=UTC process (as the pods run), with asctime's date formatted once per second.

    Nebari sets no datefmt, so asctime is always `%Y-%m-%d %H:%M:%S,mmm`; tests compare against the stock one.
    """

    converter = time.gmtime

    def __init__(self, fmt: str) -> None:
        super().__init__(fmt)
        self._second = -1
        self._date = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._date = time.strftime(self.default_time_format, self.converter(second))
        return self.default_msec_format % (self._date, record.msecs)


class _Cell:
    __slots__ = ("error", "id", "length", "text", "type")

    def __init__(
        self, cell_id: str, cell_type: str, text: str = "", error: KernelError | None = None
    ) -> None:
        self.id = cell_id
        self.type = cell_type
        self.text = text
        self.length = _utf16_len(text)
        self.error = error  # what running the cell raises

    # The hot eventInfo shapes are written as JSON text, as json.dumps would (tests check byte equality);
    # ids are hex and types are words, so only cell text needs encoding.

    def ref(self, index: int) -> str:
        """The cell as most events reference it."""
        return f'{{"id": "{self.id}", "index": {index}, "type": "{self.type}", "metadata": null}}'

    def doc(self, index: int) -> str:
        """CellEditEvent's whole-cell variant, sent when the cell becomes active."""
        doc = ", ".join(map(_encode, self.text.split("\n")))
        return f'{{"index": {index}, "doc": [{doc}], "type": "{self.type}", "metadata": null}}'


class _Notebook:
    __slots__ = (
        "_events",
        "active",
        "cells",
        "dirty",
        "executions",
        "kernel_id",
        "path",
        "saved_at",
        "session_id",
        "state",
    )

    def __init__(self, path: str, session_id: str, kernel_id: str, cells: list[_Cell], now: int) -> None:
        self.session_id = session_id
        self.kernel_id = kernel_id
        self.cells = cells
        self.active = 0
        self.executions = 0  # the kernel's execution count, In[n]
        self.dirty = False
        self.saved_at = now
        self.path = ""
        self.state = ""
        self._events: dict[str, Event] = {}
        self.move(path)

    def move(self, path: str) -> None:
        """Set the path (on open, rename or move); `notebookState` is encoded once per path, not per event."""
        self.path = path
        self.state = _encode({"sessionID": self.session_id, "notebookPath": path, "notebookContent": None})
        self._events.clear()

    def event(self, name: str, error: str | None) -> Event:
        """The truth's view of an event here; shared between events that differ only in time and content."""
        if error is not None:
            return Event(name, self.session_id, self.path, error)
        event = self._events.get(name)
        if event is None:
            event = self._events[name] = Event(name, self.session_id, self.path, None)
        return event


class _User:
    """One user and their pod: a behaviour model that yields the pod's log lines in time order.

    The user works in blocks (tens of minutes) of actions separated by thinking time, then takes a break. An
    action is a short burst of events: typing a snippet keystroke by keystroke and running it, moving between
    cells, scrolling, clipboard use, saving, glancing at another browser tab, opening or closing notebooks.
    """

    def __init__(self, persona: Persona, settings: SimulatorSettings, start_ms: int) -> None:
        self.pod = persona.pod
        self.rng = random.Random(f"{settings.seed}/{self.pod.username}")
        self.office_hours = settings.office_hours
        self.skew = self.rng.randint(-settings.clock_skew_ms, settings.clock_skew_ms)
        self.now = start_ms + self.rng.randint(0, 20_000)  # server clock, ms
        self.started = self.now
        self.last_ns = 0
        # NotebookOpenEvent's eventInfo: the server's environment, the same for every notebook of the pod
        server_environ = environ(self.pod.username, self.pod.name, self.pod.namespace, persona.secrets)
        self.open_info = _encode({"environ": server_environ})
        self.files: dict[str, list[_Cell]] = {
            path: self._existing_cells() for path in self.rng.sample(NOTEBOOK_PATHS, self.rng.randint(3, 6))
        }
        self.open: list[_Notebook] = []
        self.nb: _Notebook | None = None  # the notebook the user works in
        self.clipboard = ""
        self.kernels_connected = 0
        self.formatter = _UTCFormatter(settings.log_format)
        self.command_line = settings.exporter == Exporter.COMMAND_LINE
        self.sessions_per_week = settings.sessions_per_week
        self.record = logging.LogRecord(
            EXPORTER_LOGGER, logging.INFO, EXPORTER_FILE, EXPORTER_LINE, "", (), None, EXPORTER_FUNCTION
        )
        # What LogRecord took from this process, made deterministic: the server's pid and main thread.
        self.record.process = self.rng.randint(7, 60)
        self.record.processName = "MainProcess"
        self.record.thread = 0x7F0000000000 + self.rng.getrandbits(32)
        self.record.threadName = "MainThread"

    # -- lines ----------------------------------------------------------------------------------------------

    def _line(self, text: str, event: Event | None = None, *, untimed: bool = False) -> LogLine:
        """`untimed`: the text carries no time of its own, so the runtime's timestamp is the line's."""
        # The runtime reads the line 0.05-1.5 ms after it is logged, in order.
        ns = self.now * 1_000_000 + 50_000 + int(self.rng.random() * 1_450_000)
        if ns <= self.last_ns:
            ns = self.last_ns + 1
        self.last_ns = ns
        return LogLine(ns // 1_000_000 if untimed else self.now, ns, self.pod, text, event)

    def _event(
        self, nb: _Notebook, name: str, info: object, error: str | None = None, event_time: int | None = None
    ) -> LogLine:
        """An event whose (rarer) eventInfo shape is given as plain data."""
        return self._event_json(nb, name, _encode(info), error, event_time)

    def _event_json(
        self, nb: _Notebook, name: str, info: str, error: str | None = None, event_time: int | None = None
    ) -> LogLine:
        """A pioneer event (`info`: its eventInfo as JSON) logged now, exactly as Nebari's exporter does.

        `eventTime` is the browser's clock: earlier by the network latency, off by the user's clock skew.
        """
        if event_time is None:  # sent 2-40 ms before the server logs it
            event_time = self.now - 2 - int(self.rng.random() * 38) + self.skew
        record = self.record
        record.created = self.now / 1000
        record.msecs = float(self.now % 1000)
        record.relativeCreated = float(self.now - self.started)
        # json.dumps(event), with the notebookState part encoded once per notebook
        record.msg = (
            f'{{"eventDetail": {{"eventName": "{name}", "eventTime": {event_time}, "eventInfo": {info}}}, '
            f'"notebookState": {nb.state}}}'
        )
        if self.command_line:  # print(data): the event dict's repr
            return self._line(repr(json.loads(record.msg)), nb.event(name, error), untimed=True)
        return self._line(self.formatter.format(record), nb.event(name, error))

    def _server(self, log: ServerLog) -> Iterator[LogLine]:
        """Jupyter Server's own format; continuation lines of a multi-line message carry no prefix."""
        first, *more = log.message.split("\n")
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.now // 1000))
        yield self._line(f"[{log.level} {stamp}.{self.now % 1000:03d} {log.logger}] {first}")
        for text in more:
            yield self._line(text)

    def _between(self, low: int, high: int) -> int:
        """Uniform in [low, high]; `randint` is pure Python and several times slower on this hot path."""
        return low + int(self.rng.random() * (high - low + 1))

    def _wait(self, low_ms: int, high_ms: int) -> None:
        self.now += self._between(low_ms, high_ms)

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    # -- the day ----------------------------------------------------------------------------------------------

    def lines(self) -> Iterator[LogLine]:
        rng = self.rng
        for log in startup(self.pod.username, self.pod.slug):
            yield from self._server(log)
            self._wait(0, 40)
        self._wait(2_000, 15_000)
        while True:
            yield from self._arrive()
            block_end = self.now + rng.randint(20, 90) * 60_000
            while self.now < block_end:
                for line in self._act():
                    yield line
                    if line.event is not None and rng.random() < CHATTER_RATE:
                        self._wait(1, 30)
                        yield from self._server(server_chatter(rng, self.pod.username))
                yield from self._autosave()
                self.now += int(rng.lognormvariate(8.0, 0.9))  # think: ~3 s, sometimes much longer
            yield from self._leave()

    def _arrive(self) -> Iterator[LogLine]:
        if self.office_hours:
            while self.rng.random() > presence(self.now):
                self._wait(15 * 60_000, 60 * 60_000)
        if not self.open:
            yield from self._open_notebook()
        else:
            yield from self._tab_visibility("NotebookVisibleEvent")

    def _leave(self) -> Iterator[LogLine]:
        yield from self._tab_visibility("NotebookHiddenEvent")
        self._wait(5 * 60_000, 30 * 60_000)
        if self.sessions_per_week:  # away until the next session: days, on average
            self.now += int(self.rng.expovariate(self.sessions_per_week / WEEK_MS))

    def _act(self) -> Iterator[LogLine]:
        actions = (
            (self._write, 18),
            (self._tweak, 10),
            (self._run_through, 8),
            (self._navigate, 18),
            (self._add_cell, 5),
            (self._run_again, 7),
            (self._scroll, 12),
            (self._copy, 3),
            (self._cut, 1.5),
            (self._paste, 3),
            (self._save, 3),
            (self._glance_away, 2.5),
            (self._switch_notebook, 3),
            (self._open_notebook, 1.5),
            (self._close_notebook, 1),
            (self._remove_cell, 2),
        )
        action = self.rng.choices([a for a, _ in actions], [w for _, w in actions])[0]
        return action()

    # -- actions ------------------------------------------------------------------------------------------

    def _write(self) -> Iterator[LogLine]:
        """Type a snippet into the active cell, then usually run it with Shift+Enter."""
        nb, rng = self._notebook(), self.rng
        cell = nb.cells[nb.active]
        error = None
        if cell.type == "markdown":
            text = rng.choice(MARKDOWN)
        elif rng.random() < ERROR_RATE:
            error = rng.choice(ERRORS)
            text = error.code
        else:
            text = rng.choice(CODE)
        if cell.text and rng.random() < 0.5:
            yield self._delete(nb, cell, len(cell.text))  # select all, retype
            cell.error = None
        elif cell.text:
            text = "\n" + text
        cell.error = cell.error or error
        yield from self._type(nb, cell, text)
        if rng.random() < 0.85:
            yield from self._execute(nb, advance=True)

    def _tweak(self) -> Iterator[LogLine]:
        """Change the end of the active cell a little (a number, a name) and run it again."""
        nb, rng = self._notebook(), self.rng
        cell = nb.cells[nb.active]
        for _ in range(min(rng.randint(1, 3), len(cell.text))):
            self._wait(90, 250)
            yield self._delete(nb, cell, 1)
        yield from self._type(nb, cell, "".join(rng.choices("0123456789_abcxyz", k=rng.randint(1, 4))))
        self._wait(200, 900)
        yield from self._execute(nb, advance=rng.random() < 0.4)

    def _run_through(self) -> Iterator[LogLine]:
        """Shift+Enter through a few cells, reading each result."""
        nb = self._notebook()
        for _ in range(self.rng.randint(2, 6)):
            yield from self._execute(nb, advance=True)
            self._wait(300, 2_500)

    def _type(self, nb: _Notebook, cell: _Cell, text: str) -> Iterator[LogLine]:
        """One CellEditEvent per keystroke; as in CodeMirror, Enter brings the indentation along and, in code,
        Tab completes longer names in one change."""
        rng = self.rng
        for number, line in enumerate(text.split("\n")):
            typed = line.lstrip(" ")
            if number:
                self._wait(150, 500)
                yield self._insert(nb, cell, "\n" + line[: len(line) - len(typed)])
            for key in self._keys(typed) if cell.type == "code" else typed:
                self.now += 70 + int(rng.random() * 160)  # between keys
                if key == " " and rng.random() < 0.15:
                    self._wait(300, 1_500)
                if rng.random() < TYPO_RATE:
                    yield self._insert(nb, cell, rng.choice("asdfghjklqwertzuiop"))
                    self._wait(150, 400)
                    yield self._delete(nb, cell, 1)
                    self._wait(80, 200)
                yield self._insert(nb, cell, key)

    def _keys(self, text: str) -> list[str]:
        """What the user types for `text`: characters, except the completed rest of some longer names."""
        keys: list[str] = []
        for token in _TOKENS.findall(text):
            if len(token) >= 5 and self.rng.random() < COMPLETION_RATE:
                typed = self._between(2, 3)
                keys += [*token[:typed], token[typed:]]
            else:
                keys += token
        return keys

    def _insert(self, nb: _Notebook, cell: _Cell, text: str) -> LogLine:
        """Text inserted at the end of the cell: CodeMirror ChangeSet JSON `[retain, [0, *lines of text]]`."""
        lines = ", ".join(map(_encode, text.split("\n"))) if "\n" in text else _encode(text)
        changes = f"[{cell.length}, [0, {lines}]]" if cell.length else f"[[0, {lines}]]"
        cell.text += text
        cell.length += _utf16_len(text)
        return self._edit(nb, cell, changes)

    def _delete(self, nb: _Notebook, cell: _Cell, chars: int) -> LogLine:
        """The last `chars` characters deleted (backspace, cut, select all + delete): `[retain, [length]]`."""
        removed = _utf16_len(cell.text[-chars:])
        cell.text = cell.text[:-chars]
        cell.length -= removed
        changes = f"[{cell.length}, [{removed}]]" if cell.length else f"[[{removed}]]"
        return self._edit(nb, cell, changes)

    def _edit(self, nb: _Notebook, cell: _Cell, changes: str) -> LogLine:
        """CellEditEvent's per-keystroke variant; by far the commonest event, so its JSON is written directly."""
        nb.dirty = True
        info = f'{{"index": {nb.active}, "changes": {changes}, "type": "{cell.type}"}}'
        return self._event_json(nb, "CellEditEvent", info)

    def _execute(self, nb: _Notebook, *, advance: bool) -> Iterator[LogLine]:
        """Run the active cell; Shift+Enter moves on first (adding a cell at the end), the result comes later."""
        rng = self.rng
        index = nb.active
        cell = nb.cells[index]
        if advance:
            self._wait(30, 80)
            if index == len(nb.cells) - 1:
                new = self._new_cell("code")
                nb.cells.append(new)
                yield self._event_json(nb, "CellAddEvent", f'{{"cells": [{new.ref(index + 1)}]}}')
                self._wait(5, 20)
            nb.active = index + 1
            yield from self._activate(nb)
        error = None
        if cell.type == "code":
            nb.executions += 1
            error = cell.error
            # the kernel's reply: ~90 ms, sometimes seconds
            self.now += min(int(rng.lognormvariate(4.5, 1.2)), 60_000)
        if error is None:
            info = f'{{"cells": [{cell.ref(index)}], "success": true, "kernelError": null}}'
            yield self._event_json(nb, "CellExecuteEvent", info)
        else:
            reply = {"errorName": error.name, "errorValue": error.value}
            reply["traceback"] = ipython_traceback(error, nb.executions)
            info = f'{{"cells": [{cell.ref(index)}], "success": false, "kernelError": {_encode(reply)}}}'
            yield self._event_json(nb, "CellExecuteEvent", info, error.name)
        if error and rng.random() < FIX_RATE:
            self.now += int(rng.lognormvariate(8.0, 0.6))
            nb.active = index
            yield from self._activate(nb)
            yield self._delete(nb, cell, len(cell.text))
            cell.error = None
            yield from self._type(nb, cell, rng.choice(CODE))
            yield from self._execute(nb, advance=True)

    def _activate(self, nb: _Notebook) -> Iterator[LogLine]:
        cell = nb.cells[nb.active]
        yield self._event_json(nb, "ActiveCellChangeEvent", f'{{"cells": [{cell.ref(nb.active)}]}}')
        self._wait(8, 30)
        yield self._event_json(nb, "CellEditEvent", cell.doc(nb.active))

    def _navigate(self) -> Iterator[LogLine]:
        """Click into another cell, mostly a neighbour."""
        nb, rng = self._notebook(), self.rng
        if len(nb.cells) < 2:
            return
        if rng.random() < 0.7:
            target = nb.active + rng.choice((-3, -2, -1, -1, 1, 1, 2, 3))
            target = min(max(target, 0), len(nb.cells) - 1)
        else:
            target = rng.randrange(len(nb.cells))
        if target != nb.active:
            nb.active = target
            yield from self._activate(nb)

    def _add_cell(self) -> Iterator[LogLine]:
        """Insert a cell above or below (`a`/`b`), often writing into it straight away."""
        nb, rng = self._notebook(), self.rng
        index = nb.active + rng.choice((0, 1, 1, 1))
        cell = self._new_cell("markdown" if rng.random() < 0.15 else "code")
        nb.cells.insert(index, cell)
        nb.dirty = True
        yield self._event_json(nb, "CellAddEvent", f'{{"cells": [{cell.ref(index)}]}}')
        self._wait(5, 20)
        nb.active = index
        yield from self._activate(nb)
        if rng.random() < 0.7:
            self._wait(400, 2_000)
            yield from self._write()

    def _remove_cell(self) -> Iterator[LogLine]:
        """Delete the active cell (`dd`); the removed cell is reported without its id."""
        nb = self._notebook()
        if len(nb.cells) < 2:
            return
        index = nb.active
        cell = nb.cells.pop(index)
        nb.dirty = True
        yield self._event(
            nb, "CellRemoveEvent", {"cells": [{"index": index, "type": cell.type, "metadata": None}]}
        )
        self._wait(5, 20)
        nb.active = min(index, len(nb.cells) - 1)
        yield from self._activate(nb)

    def _run_again(self) -> Iterator[LogLine]:
        """Re-run the active cell in place (Ctrl+Enter)."""
        yield from self._execute(self._notebook(), advance=False)

    def _scroll(self) -> Iterator[LogLine]:
        nb = self._notebook()
        for _ in range(self.rng.randint(1, 4)):
            self._wait(300, 3_000)
            yield self._event(nb, "NotebookScrollEvent", {"cells": self._visible_cells(nb)})

    def _copy(self) -> Iterator[LogLine]:
        nb = self._notebook()
        cell = nb.cells[nb.active]
        self.clipboard = self.rng.choice(cell.text.split("\n"))
        yield self._clipboard(nb, "ClipboardCopyEvent", self.clipboard)

    def _cut(self) -> Iterator[LogLine]:
        """Cut the active cell's last line (nothing selected in an empty cell, as in the real capture)."""
        nb = self._notebook()
        cell = nb.cells[nb.active]
        lines = cell.text.split("\n")
        self.clipboard = lines[-1]
        yield self._clipboard(nb, "ClipboardCutEvent", self.clipboard)
        chars = len(self.clipboard) + (len(lines) > 1)
        if chars:
            self._wait(5, 15)
            yield self._delete(nb, cell, chars)

    def _clipboard(self, nb: _Notebook, name: str, selection: str) -> LogLine:
        ref = nb.cells[nb.active].ref(nb.active)
        return self._event_json(nb, name, f'{{"cells": [{ref}], "selection": {_encode(selection)}}}')

    def _paste(self) -> Iterator[LogLine]:
        """Paste at the end of the active cell; now and then a whole table from a spreadsheet."""
        nb, rng = self._notebook(), self.rng
        cell = nb.cells[nb.active]
        text = csv_block(rng) if rng.random() < 0.03 else self.clipboard or rng.choice(CODE)
        # pioneer reports the edit a few milliseconds before the paste itself
        yield self._insert(nb, cell, text)
        self._wait(5, 15)
        yield self._clipboard(nb, "ClipboardPasteEvent", text)

    def _save(self, nb: _Notebook | None = None) -> Iterator[LogLine]:
        """Ctrl+S or autosave; an untitled notebook is usually renamed on its first manual save."""
        manual = nb is None
        nb = nb or self._notebook()
        if manual and "Untitled" in nb.path and self.rng.random() < 0.7:
            self._wait(2_000, 8_000)  # typing the name into the dialog
            self._rename(nb)
        yield from self._server(ServerLog("I", "ServerApp", f"Saving file at /{nb.path}"))
        self._wait(20, 45)
        yield self._event(nb, "NotebookSaveEvent", None)
        nb.dirty = False
        nb.saved_at = self.now

    def _autosave(self) -> Iterator[LogLine]:
        for nb in self.open:
            if nb.dirty and self.now - nb.saved_at >= AUTOSAVE_MS:
                yield from self._save(nb)

    def _glance_away(self) -> Iterator[LogLine]:
        """Look at another browser tab for a while: every open notebook goes hidden, then visible."""
        yield from self._tab_visibility("NotebookHiddenEvent")
        self.now += int(self.rng.lognormvariate(9.5, 1.0))  # ~13 s, sometimes minutes
        yield from self._tab_visibility("NotebookVisibleEvent")

    def _tab_visibility(self, name: str) -> Iterator[LogLine]:
        for nb in self.open:
            self._wait(5, 25)
            info = {"cells": self._visible_cells(nb)} if name == "NotebookVisibleEvent" else None
            yield self._event(nb, name, info)

    def _switch_notebook(self) -> Iterator[LogLine]:
        """Click into a cell of another open notebook."""
        others = [nb for nb in self.open if nb is not self.nb]
        if others:
            self.nb = self.rng.choice(others)
            yield from self._activate(self.nb)

    def _open_notebook(self) -> Iterator[LogLine]:
        """Open an existing notebook or create one: a new kernel and session, the first cell and the environment."""
        rng = self.rng
        if len(self.open) >= 3:
            return
        open_paths = {nb.path for nb in self.open}
        closed = [path for path in self.files if path not in open_paths]
        if closed and rng.random() < 0.7:
            path = rng.choice(closed)
            if rng.random() < 0.3:
                yield from self._server(ServerLog("W", "ServerApp", f"Notebook {path} is not trusted"))
        else:
            folder = rng.choice(NEW_NOTEBOOK_DIRS)
            path = self._fresh_path(folder, "Untitled")
            self.files[path] = [self._new_cell("code")]
            yield from self._server(ServerLog("I", "ServerApp", f"Creating new notebook in {folder}"))
        self._wait(150, 450)
        nb = _Notebook(path, self._uuid(), self._uuid(), self.files[path], self.now)
        yield from self._server(ServerLog("I", "ServerApp", f"Kernel started: {nb.kernel_id}"))
        self._wait(150, 250)
        opened = self.now + self.skew  # the browser's clock
        self._wait(15, 40)
        # pioneer logs the open event after the first cell's, though it happened first (as in the real capture)
        first_cell = nb.cells[0].doc(0)
        yield self._event_json(nb, "CellEditEvent", first_cell, event_time=opened + self._between(8, 15))
        self._wait(25, 45)
        yield self._event_json(nb, "NotebookOpenEvent", self.open_info, event_time=opened)
        yield self._line(KERNEL_TCP_WARNING)
        self._wait(100, 200)
        kernel = nb.kernel_id
        yield from self._server(
            ServerLog(
                "I", "ServerApp", f"Adapting from protocol version 5.3 (kernel {kernel}) to 5.4 (client)."
            )
        )
        yield from self._server(ServerLog("I", "ServerApp", f"Connecting to kernel {kernel}."))
        if not self.kernels_connected:
            yield from self._server(PING_TIMEOUT_WARNING)
        self.kernels_connected += 1
        self.open.append(nb)
        self.nb = nb

    def _close_notebook(self) -> Iterator[LogLine]:
        """Close the current tab; the kernel keeps running and the server buffers its output."""
        if len(self.open) < 2:
            return
        nb = self._notebook()
        self.open.remove(nb)
        self.nb = self.open[-1]
        yield from self._server(
            ServerLog("I", "ServerApp", f"Starting buffering for {nb.kernel_id}:{self._uuid()}")
        )

    # -- helpers ------------------------------------------------------------------------------------------

    def _notebook(self) -> _Notebook:
        assert self.nb is not None, "a user acts only after opening a notebook"
        return self.nb

    def _new_cell(self, cell_type: str) -> _Cell:
        return _Cell(self._uuid(), cell_type)

    def _existing_cells(self) -> list[_Cell]:
        """Cells of a notebook written earlier; older nbformat ids are 8 hex digits."""
        rng = self.rng
        short_ids = rng.random() < 0.5
        cells = []
        for index in range(rng.randint(3, 20)):
            cell_id = f"{rng.getrandbits(32):08x}" if short_ids else self._uuid()
            if index == 0 or rng.random() < 0.2:
                cells.append(_Cell(cell_id, "markdown", rng.choice(MARKDOWN)))
            elif rng.random() < ERROR_RATE:
                error = rng.choice(ERRORS)
                cells.append(_Cell(cell_id, "code", error.code, error))
            else:
                cells.append(_Cell(cell_id, "code", rng.choice(CODE)))
        return cells

    def _visible_cells(self, nb: _Notebook) -> list[dict[str, object]]:
        """The cells in the viewport (without metadata, unlike other cell references); empty past the end."""
        rng = self.rng
        if rng.random() < 0.03:
            return []
        size = rng.randint(4, 13)
        first = max(0, min(nb.active - rng.randint(0, size - 1), len(nb.cells) - size))
        return [
            {"id": cell.id, "index": index, "type": cell.type}
            for index, cell in enumerate(nb.cells[first : first + size], start=first)
        ]

    def _rename(self, nb: _Notebook) -> None:
        unused = [path for path in NOTEBOOK_PATHS if path not in self.files]
        path = self.rng.choice(unused) if unused else self._fresh_path(nb.path.rpartition("/")[0], "notes")
        self.files[path] = self.files.pop(nb.path)
        nb.move(path)

    def _fresh_path(self, folder: str, stem: str) -> str:
        """`<folder>/<stem>.ipynb`, numbered like JupyterLab does (`Untitled1.ipynb`) if taken."""
        prefix = f"{folder}/" if folder else ""
        number = 0
        while f"{prefix}{stem}{number or ''}.ipynb" in self.files:
            number += 1
        return f"{prefix}{stem}{number or ''}.ipynb"
