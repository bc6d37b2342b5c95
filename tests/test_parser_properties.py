"""Property-based: whatever comes in, the parser never raises and never invents an event."""

from __future__ import annotations

import io
import json

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.framing import read_lines
from streams.parser import LineParser
from streams.schema import DeadLetter, is_event
from streams.settings import ParserSettings

PREFIX = b"2026-11-26 17:52:50,159      INFO   20 jupyter_jupyterlab_pioneer_config: "
EVENTS = [
    {
        "eventDetail": {
            "eventName": "CellExecuteEvent",
            "eventTime": 1795716931193,
            "eventInfo": {
                "cells": [{"id": "586d2bc3", "index": 3, "type": "code", "metadata": None}],
                "success": False,
                "kernelError": {
                    "errorName": "ZeroDivisionError",
                    "errorValue": "division by zero",
                    "traceback": [],
                },
            },
        },
        "notebookState": {
            "sessionID": "sess-exec",
            "notebookPath": "analyse/\u00fcbung 1.ipynb",
            "notebookContent": None,
        },
    },
    {
        "eventDetail": {
            "eventName": "NotebookOpenEvent",
            "eventTime": 1795716923416,
            "eventInfo": {"environ": {"LANG": "C.UTF-8", "JUPYTERHUB_API_TOKEN": "0123456789abcdef"}},
        },
        "notebookState": {
            "sessionID": "sess-open",
            "notebookPath": "Untitled.ipynb",
            "notebookContent": None,
        },
    },
    {
        "eventDetail": {
            "eventName": "CellEditEvent",
            "eventTime": 1795716924682,
            "eventInfo": {"index": 0, "changes": [[0, "i"]]},
        },
        "notebookState": {"sessionID": "sess-edit", "notebookPath": "Untitled.ipynb"},
    },
    {
        "eventDetail": {
            "eventName": "CustomDemoEvent",
            "eventTime": 1,
            "eventInfo": {"anything": [1, {"x": None}]},
        },
        "notebookState": {"sessionID": "sess-custom"},
    },
]
EVENT_LINES = [PREFIX + json.dumps(event).encode() for event in EVENTS] + [repr(e).encode() for e in EVENTS]
SERVER_LINE = b"[I 2026-11-26 18:15:14.264 ServerApp] jupyter_lsp | extension was successfully linked."
PARSER = LineParser(ParserSettings(max_line_bytes=1 << 20))
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

pieces = st.one_of(
    st.binary(max_size=200),
    st.sampled_from(
        [*EVENT_LINES, SERVER_LINE, b"eventDetail", b'{"eventDetail"', b"{'eventDetail'", b"\n", b" "]
    ),
    st.text(max_size=50).map(str.encode),
)


def holds(data: bytes, text: str) -> bool:
    """`text` is in `data`, as it is or written with string-literal escapes (a changed byte can turn
    `CellExecuteEvent` into `CellExec\\teEvent`, which JSON and dict reprs both decode to a tab)."""
    return text.encode() in data or text in data.decode("unicode_escape", "replace")


def assert_sound(results: list[object], data: bytes, lines: int) -> None:
    """No exception got here; every event is one that the input really holds."""
    events = [r for r in results if is_event(r)]
    assert len(events) <= lines
    for event in events:
        assert holds(data, event["event_name"])
        assert event["session_id"] is None or holds(data, event["session_id"])
    for result in results:
        assert result is None or is_event(result) or isinstance(result, DeadLetter)
        orjson.dumps(result)


@FAST
@given(st.binary(max_size=2000))
def test_random_bytes(data: bytes) -> None:
    assert_sound([PARSER.parse(data, "r", 0)], data, 1)


@FAST
@given(st.text(max_size=2000))
def test_random_text(text: str) -> None:
    assert_sound([PARSER.parse(text, "r", 0)], text.encode("utf-8", "surrogatepass"), 1)


@FAST
@given(st.lists(pieces, max_size=12).map(b"".join))
def test_lines_made_of_event_fragments(data: bytes) -> None:
    assert_sound([PARSER.parse(data, "r", 0)], data, 1)


@FAST
@given(st.sampled_from(EVENT_LINES), st.data())
def test_event_lines_cut_anywhere(line: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(line) - 1))
    result = PARSER.parse(line[:cut], "r", 0)
    assert not is_event(result)
    assert_sound([result], line[:cut], 1)
    assert b"0123456789abcdef" not in orjson.dumps(result)


@FAST
@given(st.sampled_from(EVENT_LINES), st.data())
def test_event_lines_with_a_byte_changed(line: bytes, data: st.DataObject) -> None:
    at = data.draw(st.integers(0, len(line) - 1))
    changed = line[:at] + bytes([data.draw(st.integers(0, 255))]) + line[at + 1 :]
    assert_sound([PARSER.parse(changed, "r", 0)], changed, 1)


@FAST
@given(st.lists(pieces, max_size=30).map(b"".join), st.sampled_from(["cri", "docker", "plain"]))
def test_framed_garbage(body: bytes, framing: str) -> None:
    first = {
        "cri": b"2026-11-26T18:15:14.1Z stderr P ",
        "docker": b'{"log":"',
        "plain": b"",
    }[framing]
    data = first + body
    results = list(PARSER.parse_stream(io.BytesIO(data), "r"))
    lines = len(list(read_lines(io.BytesIO(data), 1 << 20)))
    assert len(results) == lines
    assert_sound(results, data, lines)


@settings(max_examples=4, deadline=None)
@given(st.sampled_from(EVENT_LINES), st.integers(3, 6))
def test_giant_lines(line: bytes, megabytes: int) -> None:
    filler = b"x" * (megabytes << 20)
    parser = LineParser(ParserSettings(max_line_bytes=2 << 20))
    giants = [line + filler, line[:100] + filler, filler + line, PREFIX + b'{"eventDetail": "' + filler]
    for giant in giants:
        result = parser.parse(giant, "r", 0)
        assert_sound([result], giant, 1)
        assert result is None or isinstance(result, DeadLetter)
        assert len(orjson.dumps(result)) < 10_000
    results = list(parser.parse_stream(io.BytesIO(b"\n".join(giants) + b"\n" + line), "r"))
    assert_sound(results, b"".join(giants) + line, len(giants) + 1)
    assert is_event(results[-1])
