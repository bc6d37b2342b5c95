"""Log formats: lines rendered by the real `logging.Formatter` must parse back, time included."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from streams.logformat import (
    NEBARI_DEFAULT_LOG_FORMAT,
    compile_log_format,
    find_event_start,
    log_format_from_nebari_config,
)
from streams.parser import LineParser
from streams.schema import is_event
from streams.settings import ParserSettings

EVENT = {
    "eventDetail": {
        "eventName": "CellExecuteEvent",
        "eventTime": 1795716931193,
        "eventInfo": {
            "cells": [{"id": "586d2bc3", "index": 3, "type": "code", "metadata": None}],
            "success": False,
            "kernelError": {
                "errorName": "ZeroDivisionError",
                "errorValue": "division by zero",
                "traceback": ["..."],
            },
        },
    },
    "notebookState": {
        "sessionID": "7aae47f3",
        "notebookPath": "analyse/\u00fcbung 1.ipynb",
        "notebookContent": None,
    },
}
CREATED = 1795716931.207  # the log record's time: 2026-11-26 17:55:31.207 UTC


def render(
    fmt: str, message: str, *, level: int = logging.INFO, name: str = "jupyter_jupyterlab_pioneer_config"
) -> str:
    """A line exactly as Nebari's exporter would write it (asctime in UTC, as in Nebari's pods)."""
    formatter = logging.Formatter(fmt)
    formatter.converter = time.gmtime
    record = logging.LogRecord(
        name, level, "/etc/jupyter/jupyter_jupyterlab_pioneer_config.py", 20, message, None, None
    )
    record.created, record.msecs = CREATED, 207.0
    return formatter.format(record)


FORMATS = [
    NEBARI_DEFAULT_LOG_FORMAT,
    "%(asctime)s.%(msecs)03d %(message)s",
    "%(asctime)s %(levelname)-8s %(name)s %(message)s",
    "[%(levelname).1s %(asctime)s %(name)s] %(message)s",
    "%(created)f %(process)d %(threadName)s %(message)s",
    "%(asctime)s | %(lineno)4d | %(funcName)s | %(message)s | end",
    "%(asctime)s %(levelname)9s %(filename)s:%(lineno)d 100%% %(message)s",
    "%(relativeCreated)d %(thread)x %(pathname)s %(module)s: %(message)s",
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("level", [logging.INFO, logging.WARNING, 5])
def test_rendered_lines_parse_back_with_their_time(fmt: str, level: int) -> None:
    line = render(fmt, json.dumps(EVENT), level=level)
    event = LineParser(ParserSettings(log_format=fmt)).parse(line, "f", 0)

    assert is_event(event), event
    assert (event["event_name"], event["error_name"], event["notebook_path"]) == (
        "CellExecuteEvent",
        "ZeroDivisionError",
        "analyse/übung 1.ipynb",
    )
    has_time = "%(asctime)s" in fmt or "%(created)f" in fmt
    assert event["log_time_ms"] == (round(CREATED * 1000) if has_time else None)


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_message_group_is_exactly_the_message(fmt: str) -> None:
    message = "a message: with [brackets] | pipes %% and 100%"
    match = compile_log_format(fmt).match(render(fmt, message).encode())
    assert match is not None
    assert match["message"].decode() == message


def test_the_nebari_default_line() -> None:
    line = b'2026-11-26 17:52:50,159      INFO   20 jupyter_jupyterlab_pioneer_config: {"eventDetail": {}}'
    match = compile_log_format(NEBARI_DEFAULT_LOG_FORMAT).match(line)
    assert match is not None
    assert match["asctime"] == b"2026-11-26 17:52:50,159"
    assert match["message"] == b'{"eventDetail": {}}'


def test_server_lines_do_not_match_the_default_format() -> None:
    pattern = compile_log_format(NEBARI_DEFAULT_LOG_FORMAT)
    assert (
        pattern.match(
            b"[I 2026-11-26 18:15:14.264 ServerApp] jupyter_lsp | extension was successfully linked."
        )
        is None
    )
    assert pattern.match(b"    Setting websocket_ping_timeout=30000") is None


def test_lines_that_miss_the_format_fall_back_to_the_event_object() -> None:
    parser = LineParser(ParserSettings(log_format="%(asctime)s %(levelname)s %(message)s"))
    for prefix in ["", "whatever prefix: ", "2026-11-26 17:52:50,159 INFO x "]:
        event = parser.parse(prefix + json.dumps(EVENT), "f", 0)
        assert is_event(event), prefix
        assert event["event_name"] == "CellExecuteEvent"
    assert find_event_start(b"x {'eventDetail': 1} {\"eventDetail\": 2}") == 2
    assert find_event_start(b'{"eventDetail": 2}') == 0
    assert find_event_start(b"eventDetail mentioned") == -1


def test_lines_that_only_mention_event_detail_are_skipped() -> None:
    parser = LineParser()
    assert parser.parse(b"[W 2026-11-26 18:15:14.264 ServerApp] no eventDetail here", "f", 0) is None
    assert parser.parse(b"2026-11-26 17:52:50,159 INFO 20 m: eventDetail", "f", 0) is None


def test_a_format_without_message_always_falls_back() -> None:
    parser = LineParser(ParserSettings(log_format="%(asctime)s"))
    event = parser.parse("2026-11-26 17:52:50,159 " + json.dumps(EVENT), "f", 0)
    assert is_event(event)
    assert event["log_time_ms"] is None


def test_impossible_times_are_no_times() -> None:
    line = "2026-13-45 99:99:99,159      INFO   20 m: " + json.dumps(EVENT)
    event = LineParser().parse(line, "f", 0)
    assert is_event(event)
    assert event["log_time_ms"] is None


def test_log_format_from_settings_or_nebari_config(tmp_path: Path) -> None:
    config = tmp_path / "nebari-config.yml"
    config.write_text("telemetry:\n  jupyterlab_pioneer:\n    enabled: true\n    log_format: '%(message)s'\n")
    assert log_format_from_nebari_config(config) == "%(message)s"
    assert ParserSettings(nebari_config=config).effective_log_format() == "%(message)s"
    assert ParserSettings(nebari_config=config, log_format="%(name)s %(message)s").effective_log_format() == (
        "%(name)s %(message)s"
    )
    assert ParserSettings().effective_log_format() == NEBARI_DEFAULT_LOG_FORMAT

    config.write_text("project_name: demo\ntelemetry:\n  jupyterlab_pioneer:\n    enabled: true\n")
    assert ParserSettings(nebari_config=config).effective_log_format() == NEBARI_DEFAULT_LOG_FORMAT
    config.write_text("just a string\n")
    assert log_format_from_nebari_config(config) is None


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIONEER_PARSER_LOG_FORMAT", "%(message)s")
    monkeypatch.setenv("PIONEER_PARSER_CAPTURE_CONTENT", "true")
    monkeypatch.setenv("PIONEER_PARSER_ENVIRON_ALLOWLIST", '["LANG"]')
    monkeypatch.setenv("PIONEER_PARSER_PSEUDONYMIZE_KEY", "hunter2-key-material")
    settings = ParserSettings()
    assert settings.effective_log_format() == "%(message)s"
    assert settings.capture_content is True
    assert settings.environ_allowlist == frozenset({"LANG"})
    assert settings.pseudonymize_key is not None
    assert settings.pseudonymize_key.get_secret_value() == "hunter2-key-material"
    assert "hunter2" not in repr(settings)


def test_loose_fields_match_in_linear_time() -> None:
    """Three loose fields used to backtrack cubically: a 2 KB line took seconds, megabytes forever."""
    fmt = "%(name)s %(funcName)s %(module)s: %(message)s"
    parser = LineParser(ParserSettings(log_format=fmt))
    started = time.perf_counter()
    for line in [b"eventDetail " + b"a " * 1_000_000, b'x y z: {"eventDetail": ' + b"a " * 1_000_000]:
        parser.parse(line, "f", 0)
    assert time.perf_counter() - started < 2.0
    assert compile_log_format(fmt).match(render(fmt, "msg").encode()) is not None
