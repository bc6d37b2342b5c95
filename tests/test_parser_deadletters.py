"""Malformed event lines become dead letters with the right reason, position and a safe excerpt."""

from __future__ import annotations

import io
import json
from typing import Any

import orjson
import pytest

from streams.identity import PodMeta
from streams.parser import DEAD_LETTER_LINE_BYTES, REPR_MAX_BYTES, LineParser
from streams.schema import DEAD_LETTER_ADAPTER, DeadLetter, DeadLetterReason, is_event
from streams.settings import ParserSettings

PREFIX = "2026-11-26 17:52:50,159      INFO   20 jupyter_jupyterlab_pioneer_config: "
TOKEN = "5f0c1e6a9b2d4c8e7f3a1b0c9d8e7f6a"  # a fake JUPYTERHUB_API_TOKEN


def event(name: str = "CellExecuteEvent", info: Any = None, **detail: Any) -> dict[str, Any]:
    if info is None:
        info = {"cells": [{"id": "c1", "index": 0, "type": "code"}], "success": True, "kernelError": None}
    return {
        "eventDetail": {"eventName": name, "eventTime": 1795716925572, "eventInfo": info, **detail},
        "notebookState": {"sessionID": "s-1", "notebookPath": "a.ipynb", "notebookContent": None},
    }


def line(value: Any) -> bytes:
    return (PREFIX + json.dumps(value)).encode()


def open_event_line() -> bytes:
    environ = {"HOME": "/home/jovyan", "JUPYTERHUB_API_TOKEN": TOKEN, "LANG": "C.UTF-8", "PATH": "/bin"}
    return line(event("NotebookOpenEvent", {"environ": environ}))


def dead_letter(raw: bytes | str, offset: int = 4242, parser: LineParser | None = None) -> DeadLetter:
    pod = PodMeta(pod="jupyter-alice", namespace="dev", container="notebook")
    result = (parser or LineParser()).parse(raw, "pods/alice.log", offset, pod)
    assert isinstance(result, DeadLetter), result
    assert result.source == {"id": "pods/alice.log", "offset": offset}
    assert (result.pod, result.namespace, result.container) == ("jupyter-alice", "dev", "notebook")
    assert DEAD_LETTER_ADAPTER.validate_json(orjson.dumps(result)) == result
    return result


def test_truncated_json() -> None:
    letter = dead_letter(line(event())[:-20])
    assert letter.reason is DeadLetterReason.INVALID_JSON
    assert "unexpected end of data" in letter.detail
    assert letter.line == line(event())[:-20].decode()


@pytest.mark.parametrize(
    ("value", "where"),
    [
        (event(eventTime="yesterday"), "eventTime"),
        (event(eventTime=1.5), "eventTime"),
        (event(eventTime="1795716925572"), "eventTime"),
        (event("CellAddEvent", {"cells": {"id": "c1", "index": 0}}), "cells"),
        (event("CellAddEvent", {"cells": [{"id": "c1", "index": "0"}]}), "index"),
        (event("CellExecuteEvent", {"cells": [], "success": "yes"}), "success"),
        (event("CellEditEvent", {"index": 0}), "changes"),
        (event("NotebookOpenEvent", {"environ": "PATH=/bin"}), "environ"),
        ({"eventDetail": {"eventName": "X"}}, "eventTime"),
        ({"eventDetail": "CellAddEvent"}, "eventDetail"),
        ({"eventDetail": {"eventName": 7, "eventTime": 1}}, "eventName"),
        ({"notebookState": {}, "x": "eventDetail"}, "eventDetail"),
    ],
)
def test_schema_violations_name_the_field_not_the_value(value: dict[str, Any], where: str) -> None:
    letter = dead_letter(line(value))
    assert letter.reason is DeadLetterReason.SCHEMA_VIOLATION
    assert where in letter.detail
    assert "yesterday" not in letter.detail
    assert "PATH=" not in letter.detail


def test_invalid_utf8() -> None:
    raw = line(event()).replace(b"a.ipynb", b"\xff\xfe.ipynb")
    letter = dead_letter(raw)
    assert letter.reason is DeadLetterReason.INVALID_UTF8
    assert "\ufffd" in letter.line
    surrogate = dead_letter(line(event()).decode().replace("a.ipynb", "\udc80.ipynb"))
    assert surrogate.reason is DeadLetterReason.INVALID_UTF8


def test_a_line_over_max_line_bytes() -> None:
    parser = LineParser(ParserSettings(max_line_bytes=1000))
    big = line(event("CellEditEvent", {"index": 0, "doc": ["x" * 10_000]}))
    letter = dead_letter(big, parser=parser)
    assert letter.reason is DeadLetterReason.LINE_TOO_LONG
    assert letter.line_bytes == len(big)
    assert len(letter.line) == DEAD_LETTER_LINE_BYTES


def test_an_overlong_line_in_a_stream_is_dead_lettered_at_its_offset() -> None:
    parser = LineParser(ParserSettings(max_line_bytes=1000))
    ok = line(event())
    big = line(event("CellEditEvent", {"index": 0, "doc": ["x" * 5000]}))
    results = list(parser.parse_stream(io.BytesIO(ok + b"\n" + big + b"\n" + ok + b"\n"), "s"))
    assert [type(r) for r in results] == [dict, DeadLetter, dict]
    letter = results[1]
    assert isinstance(letter, DeadLetter)
    assert (letter.reason, letter.source["offset"], letter.line_bytes) == (
        DeadLetterReason.LINE_TOO_LONG,
        len(ok) + 1,
        1001,
    )
    assert is_event(results[2])
    assert results[2]["source"]["offset"] == len(ok) + len(big) + 2


def test_dict_repr_failures() -> None:
    assert (
        dead_letter("{'eventDetail': {'eventName': 'NotebookSaveEvent'").reason
        is DeadLetterReason.INVALID_REPR
    )
    called = dead_letter("{'eventDetail': __import__('os').system('true')}")
    assert called.reason is DeadLetterReason.INVALID_REPR
    assert dead_letter("{'eventDetail': {1, 2}}").reason is DeadLetterReason.SCHEMA_VIOLATION
    assert dead_letter("{'eventDetail': {1: 2}}").reason is DeadLetterReason.SCHEMA_VIOLATION
    huge = "{'eventDetail': '" + "x" * REPR_MAX_BYTES + "'}"
    assert dead_letter(huge).reason is DeadLetterReason.LINE_TOO_LONG
    nested = "{'eventDetail': " + "[" * 10_000 + "]" * 10_000 + "}"
    assert dead_letter(nested).reason is DeadLetterReason.INVALID_REPR


def test_a_truncated_notebook_open_event_does_not_leak_its_token() -> None:
    raw = open_event_line()
    token_end = raw.index(TOKEN.encode()) + len(TOKEN)
    cuts = range(raw.index(b"environ"), len(raw))
    letters = [dead_letter(raw[:cut], cut) for cut in cuts]
    assert {letter.reason for letter in letters} == {DeadLetterReason.INVALID_JSON}
    for letter in letters:
        assert TOKEN[:6] not in letter.line
        assert TOKEN not in orjson.dumps(letter).decode()
    assert '"environ": "[REDACTED]"' in letters[token_end - cuts.start].line


def test_a_schema_violating_notebook_open_event_does_not_leak_its_token() -> None:
    value = json.loads(open_event_line()[len(PREFIX) :])
    value["eventDetail"]["eventTime"] = "soon"
    letter = dead_letter(line(value))
    assert letter.reason is DeadLetterReason.SCHEMA_VIOLATION
    assert TOKEN not in letter.line
    assert '"notebookState"' in letter.line  # the rest of the line stays readable
    as_repr = dead_letter(repr(value))
    assert TOKEN not in as_repr.line


def test_the_parser_never_raises_on_bugs(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> None:
        raise KeyError("boom")

    parser = LineParser()
    monkeypatch.setattr(parser, "_normalize", broken)
    letter = dead_letter(line(event()), parser=parser)
    assert letter.reason is DeadLetterReason.PARSER_ERROR
    assert letter.detail == "parser error: KeyError"


@pytest.mark.filterwarnings("error")
def test_a_dict_repr_with_an_invalid_escape_parses_quietly() -> None:
    result = LineParser().parse(r"{'eventDetail': {'eventName': 'Demo\h', 'eventTime': 1}}", "s", 0)
    assert is_event(result)
    assert result["event_name"] == "Demo\\h"
