"""The contract between the collector's edge redaction and the parser: for every line shape the parser
accepts, parsing what leaves the node gives what parsing the original line gives, and no secret leaves.

Shapes: Nebari's logging exporter under any `log_format` (JSON, text before and after the event) and
jupyterlab-pioneer's command_line_exporter (Python dict reprs), framed plain, CRI or docker, long lines
split into partial chunks. Sources: the simulator's users, the real captures in shared/samples, and
hand-written events with nested quotes, escapes and non-ASCII.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.edge import MAX_LOG_CHARS, edge_line, may_be_event
from collector.lines import LineAssembler
from collector.settings import CollectorSettings
from simulator.output import frame
from simulator.settings import Exporter, SimulatorSettings
from simulator.simulate import Simulation
from streams.framing import Framing
from streams.parser import LineParser, ParseResult
from streams.privacy import DEFAULT_ENVIRON_ALLOWLIST
from streams.schema import DeadLetter, is_event
from streams.settings import ParserSettings

FORMATS = [
    "%(asctime)s %(levelname)9s %(lineno)4s %(module)s: %(message)s",  # Nebari's default
    "%(asctime)s.%(msecs)03d %(message)s",  # Nebari's docs
    "%(message)s",
    "[%(levelname)s] %(name)s %(created)f | %(message)s | pid=%(process)d",  # text after the event
]
MAX_LINE_BYTES = CollectorSettings().max_line_bytes
SECRETS = {
    "JUPYTERHUB_API_TOKEN": "tok-9a7f3c1e",
    "AWS_SECRET_ACCESS_KEY": "sec-'q\"uo\\ted'-5d2b",
    "DB_PASSWORD": "pw-ümlaut-€-88",
    "GITHUB_AUTH": 'ghp_{"nested": [1, 2]}_77',
}
TIME = datetime(2026, 11, 26, 17, 52, 50, 159000, tzinfo=UTC)  # the parser and the edge are clock-free


def parsers(log_format: str | None = None) -> list[LineParser]:
    """Content dropped (the default) and captured: the edge must suit both."""
    return [
        LineParser(ParserSettings(log_format=log_format, capture_content=capture))
        for capture in (False, True)
    ]


def assert_contract(parser: LineParser, framed: bytes, secrets: list[str]) -> list[ParseResult]:
    """Read `framed` as the collector reads a source (line assembly: framing, partial chunks), then parse
    each line as it left the node and as it was: the same results; no secret left the node. Returns
    the results."""
    assembler = LineAssembler("source", {}, MAX_LINE_BYTES)
    results = []
    for line in assembler.feed(framed) + assembler.finish():
        if not may_be_event(line.log):
            continue
        left, _ = edge_line(line.log, MAX_LOG_CHARS)
        for secret in secrets:
            assert secret not in left
        original = parser.parse(line.log, "source", line.offset, runtime_time=line.time)
        after_edge = parser.parse(left, "source", line.offset, runtime_time=line.time)
        assert comparable(after_edge) == comparable(original), line.log[:300]
        if is_event(after_edge) and isinstance(after_edge["info"], dict):
            assert set(after_edge["info"].get("environ") or {}) <= DEFAULT_ENVIRON_ALLOWLIST
        results.append(after_edge)
    return [r for r in results if r is not None]


def comparable(result: ParseResult) -> Any:
    """An event as it is, a dead letter by its reason (its line is the scrubbed text it came from)."""
    if isinstance(result, DeadLetter):
        return ("dead letter", result.reason, result.source)
    return orjson.loads(orjson.dumps(result))


# -- hand-written events -----------------------------------------------------------------------------

awkward_text = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)) | st.sampled_from(list("'\"\\{}[]:,\n\t")),
    max_size=40,
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | awkward_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(awkward_text, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def pioneer_events(draw: st.DrawFn) -> dict[str, Any]:
    state = {
        "sessionID": draw(awkward_text),
        "notebookPath": draw(awkward_text) + ".ipynb",
        "notebookContent": None,
    }
    cell = {"id": draw(awkward_text), "index": draw(st.integers(0, 50)), "type": "code", "metadata": None}
    kind = draw(st.sampled_from(["open", "execute", "edit", "clipboard", "custom"]))
    if kind == "open":
        environ = {"LANG": "C.UTF-8", "HOME": "/home/jovyan", "NOTE": draw(awkward_text), **SECRETS}
        environ["PADDING"] = "x" * draw(st.sampled_from([0, 20_000]))  # long lines: partial chunks
        name, info = "NotebookOpenEvent", {"environ": environ}
    elif kind == "execute":
        error = draw(st.none() | st.just({"errorName": "KeyError", "errorValue": draw(awkward_text),
                                          "traceback": [draw(awkward_text)]}))  # fmt: skip
        name, info = "CellExecuteEvent", {"cells": [cell], "success": error is None, "kernelError": error}
    elif kind == "edit":
        name, info = "CellEditEvent", {"index": 0, "doc": [draw(awkward_text)], "type": "code"}
    elif kind == "clipboard":
        name, info = "ClipboardPasteEvent", {"cells": [cell], "selection": draw(awkward_text)}
    else:
        name, info = "CustomDemoEvent", {"api_key": SECRETS["JUPYTERHUB_API_TOKEN"], "x": draw(json_values)}
    event_time = int(TIME.timestamp() * 1000) - draw(st.integers(0, 5000))
    return {
        "eventDetail": {"eventName": name, "eventTime": event_time, "eventInfo": info},
        "notebookState": state,
    }


def logged(event: dict[str, Any], log_format: str, ensure_ascii: bool) -> str:
    """The line Nebari's exporter writes: `logger.info(json.dumps(event))` under the site's format."""
    record = logging.LogRecord("builtins", logging.INFO, "/etc/jupyter/x.py", 20, "", (), None)
    record.created, record.msecs = TIME.timestamp(), 159.0
    record.msg = json.dumps(event, ensure_ascii=ensure_ascii)
    formatter = logging.Formatter(log_format)
    formatter.converter = lambda seconds: datetime.fromtimestamp(seconds or 0, UTC).timetuple()  # type: ignore[method-assign,assignment,misc]
    return formatter.format(record)


def framed_lines(lines: list[str], framing: Framing) -> bytes:
    ns = int(TIME.timestamp()) * 1_000_000_000
    return "".join(frame(line, ns + n, framing) for n, line in enumerate(lines)).encode()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(pioneer_events(), min_size=1, max_size=4),
    st.sampled_from([*FORMATS, "repr"]),
    st.sampled_from(list(Framing)),
    st.booleans(),
)
def test_hand_written_events_parse_the_same_after_the_edge(
    events: list[dict[str, Any]], shape: str, framing: Framing, ensure_ascii: bool
) -> None:
    if shape == "repr":  # command_line_exporter: print(event)
        lines = [repr(event) for event in events]
    else:
        lines = [logged(event, shape, ensure_ascii) for event in events]
    for parser in parsers(None if shape == "repr" else shape):
        results = assert_contract(parser, framed_lines(lines, framing), list(SECRETS.values()))
        assert [r["event_name"] for r in results] == [e["eventDetail"]["eventName"] for e in events]


# -- the simulator's users, every shape it writes ----------------------------------------------------


SIMULATED_SHAPES = [
    *((Exporter.LOGGING, framing, log_format) for framing in Framing for log_format in FORMATS),
    *((Exporter.COMMAND_LINE, framing, FORMATS[0]) for framing in (Framing.CRI, Framing.DOCKER)),
]  # a command_line_exporter line ignores log_format and has no time of its own: never plain


@pytest.mark.parametrize(("exporter", "framing", "log_format"), SIMULATED_SHAPES)
def test_simulated_users_parse_the_same_after_the_edge(
    exporter: Exporter, framing: Framing, log_format: str
) -> None:
    settings = SimulatorSettings(
        users=3, seed=4, start=TIME, duration=240, exporter=exporter, log_format=log_format, framing=framing
    )
    simulation = Simulation(settings)
    lines = list(simulation.lines())
    framed = "".join(frame(line.text, line.ns, framing) for line in lines).encode()
    secrets = [value for persona in simulation.personas for value in persona.secrets.values()]
    for parser in parsers(log_format):
        results = assert_contract(parser, framed, secrets)
        assert all(is_event(r) for r in results)
        assert len(results) == sum(1 for line in lines if line.event)


# -- the real captures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def samples() -> Path:
    path = Path(__file__).resolve().parents[2] / "shared" / "samples"
    if not path.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"the real captures are missing at {path}")
        pytest.skip(f"the real captures are not available at {path}")
    return path


@pytest.mark.parametrize("capture", ["alice.raw.log", "alice.cri.log", "alice.docker.log"])
def test_the_real_captures_parse_the_same_after_the_edge(samples: Path, capture: str) -> None:
    truth = json.loads((samples / "alice.truth.json").read_text(encoding="utf-8"))
    for parser in parsers():
        results = assert_contract(parser, (samples / capture).read_bytes(), truth["secret_values"])
        assert sum(1 for r in results if is_event(r)) == truth["total_events"]


def test_the_real_captures_as_dict_reprs_parse_the_same_after_the_edge(samples: Path) -> None:
    """command_line_exporter prints what Nebari's exporter logs as JSON: the same events, as dict reprs."""
    truth = json.loads((samples / "alice.truth.json").read_text(encoding="utf-8"))
    raw = (samples / "alice.raw.log").read_text(encoding="utf-8").splitlines()
    reprs = [repr(json.loads(line[line.index("{") :])) for line in raw if '{"eventDetail"' in line]
    assert any("NotebookOpenEvent" in line and "environ" in line for line in reprs)
    for parser in parsers():
        results = assert_contract(parser, framed_lines(reprs, Framing.CRI), truth["secret_values"])
        assert sum(1 for r in results if is_event(r)) == truth["total_events"]
