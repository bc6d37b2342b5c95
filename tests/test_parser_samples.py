"""The parser on the real captures in shared/samples (plain, CRI and docker framings of one session)."""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from pioneer_telemetry.cli import app
from streams.identity import PodMeta
from streams.parser import LineParser, ParseResult
from streams.schema import DeadLetter, PioneerEvent, is_event
from streams.settings import ParserSettings

CAPTURES = ["alice.raw.log", "alice.cri.log", "alice.docker.log"]
DOCS_FORMAT = "%(asctime)s.%(msecs)03d %(message)s"


@pytest.fixture(scope="module")
def samples() -> Path:
    path = Path(__file__).resolve().parents[2] / "shared" / "samples"
    if not path.is_dir():
        if os.environ.get("CI"):  # CI has shared/ beside the clone: a skip there would hide a failure
            pytest.fail(f"the real captures are missing at {path}")
        pytest.skip(f"the real captures are not available at {path}")
    return path


@pytest.fixture(scope="module")
def truth(samples: Path) -> dict[str, Any]:
    return json.loads((samples / "alice.truth.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def raw_lines(samples: Path) -> list[bytes]:
    return (samples / "alice.raw.log").read_bytes().splitlines()


def events_of(results: list[ParseResult]) -> list[PioneerEvent]:
    return [r for r in results if is_event(r)]


def comparable(event: PioneerEvent) -> dict[str, Any]:
    """An event without what depends on where it was read from."""
    record = orjson.loads(orjson.dumps(event))
    del record["event_id"], record["source"]
    return record


@pytest.mark.parametrize("capture", CAPTURES)
def test_captures_yield_exactly_the_true_events(samples: Path, truth: dict[str, Any], capture: str) -> None:
    results = list(LineParser().parse_file(samples / capture))
    events = events_of(results)

    assert len(results) == 839
    assert len(events) == truth["total_events"] == 795
    assert results.count(None) == 44
    assert not [r for r in results if isinstance(r, DeadLetter)]
    assert Counter(e["event_name"] for e in events) == truth["counts_by_eventName"]
    assert Counter(e["session_id"] for e in events) == truth["counts_by_sessionID"]
    assert Counter(e["notebook_path"] for e in events) == truth["counts_by_notebookPath"]
    failures = [e for e in events if e["success"] is False]
    assert [e["error_name"] for e in failures] == truth["cellExecute_failure_errorNames"]
    assert len(failures) == truth["cellExecute_failures"]
    assert [e["event_time_ms"] for e in events] == [t["eventDetail"]["eventTime"] for t in truth["events"]]
    assert {e["user"] for e in events} == {"alice"}


def test_framings_agree_and_ids_follow_the_source(samples: Path) -> None:
    parser = LineParser()
    by_capture = {capture: events_of(list(parser.parse_file(samples / capture))) for capture in CAPTURES}
    plain = by_capture["alice.raw.log"]
    for events in by_capture.values():
        assert [comparable(e) for e in events] == [comparable(e) for e in plain]
    assert [e["event_id"] for e in events_of(list(parser.parse_file(samples / "alice.raw.log")))] == [
        e["event_id"] for e in plain
    ]
    assert len({e["event_id"] for events in by_capture.values() for e in events}) == 3 * 795


def test_log_time_comes_from_the_line_prefix(samples: Path, raw_lines: list[bytes]) -> None:
    first = next(line for line in raw_lines if b"eventDetail" in line)
    stamp = datetime.strptime(first[:23].decode(), "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=UTC)
    event = LineParser().parse(first, "raw", 0)
    assert is_event(event)
    assert event["log_time_ms"] == int(stamp.timestamp() * 1000)
    assert event["event_time_ms"] == 1795716923428


def test_runtime_time_when_the_format_has_no_time(samples: Path) -> None:
    parser = LineParser(ParserSettings(log_format="%(levelname)s %(module)s: %(message)s"))
    events = events_of(list(parser.parse_file(samples / "alice.cri.log")))
    assert len(events) == 795
    cri_first = next(
        line for line in (samples / "alice.cri.log").read_text().splitlines() if "eventDetail" in line
    )
    stamp = datetime.fromisoformat(cri_first.split(" ", 1)[0])
    assert events[0]["log_time_ms"] == int(stamp.timestamp() * 1000)


def test_nebari_docs_lines_with_their_format_and_with_the_fallback(samples: Path) -> None:
    with_format = events_of(
        list(LineParser(ParserSettings(log_format=DOCS_FORMAT)).parse_file(samples / "nebari-docs.log"))
    )
    fallback = events_of(list(LineParser().parse_file(samples / "nebari-docs.log")))

    expected_ms = int(datetime(2023, 11, 14, 12, 0, 29, 39000, tzinfo=UTC).timestamp() * 1000)
    assert len(with_format) == len(fallback) == 13
    assert {e["log_time_ms"] for e in with_format} == {expected_ms}
    assert {e["log_time_ms"] for e in fallback} == {None}
    assert [comparable(e) | {"log_time_ms": None} for e in with_format] == [comparable(e) for e in fallback]
    assert Counter(e["event_name"] for e in with_format) == {
        "ActiveCellChangeEvent": 5,
        "CellEditEvent": 4,
        "CellRemoveEvent": 4,
    }
    removed = next(e for e in with_format if e["event_name"] == "CellRemoveEvent")
    assert removed["cell_ids"] == []
    assert removed["cell_indices"] == [7]


@pytest.mark.parametrize("capture_content", [False, True])
def test_no_secret_value_reaches_any_output(
    samples: Path, raw_lines: list[bytes], truth: dict[str, Any], capture_content: bool
) -> None:
    parser = LineParser(ParserSettings(capture_content=capture_content))
    outputs = [r for capture in CAPTURES for r in parser.parse_file(samples / capture) if r is not None]
    # and dead letters of every truncation of the lines that carry the secrets
    for line in (line for line in raw_lines if b"NotebookOpenEvent" in line):
        outputs += [r for cut in range(len(line)) if (r := parser.parse(line[:cut], "cut", cut)) is not None]
    assert any(isinstance(r, DeadLetter) for r in outputs)

    written = b"\n".join(orjson.dumps(r) for r in outputs).decode()
    assert truth["secret_values"]
    for name, value in truth["secret_values"].items():
        assert value not in written, name
    opened = next(r for r in outputs if is_event(r) and r["event_name"] == "NotebookOpenEvent")
    assert opened["info"] is not None
    assert opened["info"]["environ"]["TZ"] == "UTC"
    assert not any("TOKEN" in key for key in opened["info"]["environ"])


def test_content_only_with_capture_on(samples: Path) -> None:
    def execute_failures(capture_content: bool) -> list[PioneerEvent]:
        parser = LineParser(ParserSettings(capture_content=capture_content))
        return [
            e for e in events_of(list(parser.parse_file(samples / "alice.raw.log"))) if e["success"] is False
        ]

    off, on = execute_failures(False), execute_failures(True)
    assert off[0]["info"] is not None
    assert on[0]["info"] is not None
    assert off[0]["info"]["kernelError"] == {"errorName": "ZeroDivisionError"}
    assert on[0]["info"]["kernelError"]["errorValue"] == "division by zero"
    assert on[0]["info"]["kernelError"]["traceback"]


def test_command_line_exporter_dict_reprs(truth: dict[str, Any], raw_lines: list[bytes]) -> None:
    parser = LineParser()
    json_lines = [line for line in raw_lines if b"eventDetail" in line]
    for offset, (event, json_line) in enumerate(zip(truth["events"], json_lines, strict=True)):
        from_repr = parser.parse(repr(event), "stdout", offset)
        from_json = parser.parse(json_line, "stdout", offset)
        assert is_event(from_repr), from_repr
        assert is_event(from_json)
        assert comparable(from_repr) == comparable(from_json) | {"log_time_ms": None}


def cri_chunks(content: bytes, stream: str, size: int) -> list[bytes]:
    pieces = [content[i : i + size] for i in range(0, len(content), size)] or [b""]
    return [
        b"2026-11-26T18:15:14.%09dZ %s %s %s\n"
        % (n, stream.encode(), b"P" if n < len(pieces) - 1 else b"F", piece)
        for n, piece in enumerate(pieces)
    ]


def docker_chunks(content: bytes, stream: str, size: int) -> list[bytes]:
    text = content.decode()
    pieces = [text[i : i + size] for i in range(0, len(text), size)] or [""]
    pieces[-1] += "\n"
    return [
        orjson.dumps({"log": p, "stream": stream, "time": "2026-11-26T18:15:14.1Z"}) + b"\n" for p in pieces
    ]


def interleave(event_lines: list[bytes], server_lines: list[bytes], chunker: Any, size: int) -> bytes:
    """Event lines split on stderr, with whole server lines on stdout between their chunks."""
    out: list[bytes] = []
    server = iter(server_lines * 100)
    for line in event_lines:
        for chunk in chunker(line, "stderr", size):
            out.append(chunk)
            out.extend(chunker(next(server), "stdout", 1 << 20))
    return b"".join(out)


def big_event() -> bytes:
    """A real-shaped event far over 16 KiB: a whole-cell CellEditEvent with a long cell."""
    doc = [f"row_{i} = compute({i}, 'ä')  # {'x' * 40}" for i in range(400)]
    event = {
        "eventDetail": {
            "eventName": "CellEditEvent",
            "eventTime": 1795716923428,
            "eventInfo": {"index": 3, "doc": doc},
        },
        "notebookState": {"sessionID": "s-1", "notebookPath": "big.ipynb", "notebookContent": None},
    }
    return (
        b"2026-11-26 17:52:50,159      INFO   20 jupyter_jupyterlab_pioneer_config: "
        + json.dumps(event).encode()
    )


@pytest.mark.parametrize("chunker", [cri_chunks, docker_chunks], ids=["cri", "docker"])
@pytest.mark.parametrize("size", [100, 16384])
def test_split_lines_reassemble_to_the_unsplit_events(
    raw_lines: list[bytes], chunker: Any, size: int
) -> None:
    event_lines = [*[line for line in raw_lines if b"eventDetail" in line][:120], big_event()]
    server_lines = [line for line in raw_lines if b"eventDetail" not in line]
    assert len(big_event()) > 16384
    parser = LineParser(ParserSettings(capture_content=True))
    split = events_of(
        list(parser.parse_stream(io.BytesIO(interleave(event_lines, server_lines, chunker, size)), "s"))
    )
    whole = [parser.parse(line, "s", 0) for line in event_lines]
    assert len(split) == len(whole) == 121
    assert [comparable(e) for e in split] == [comparable(e) for e in whole if is_event(e)]
    assert split[-1]["info"] is not None
    assert len(split[-1]["info"]["doc"]) == 400


def test_cli_parses_the_captures(samples: Path) -> None:
    for capture in CAPTURES:
        result = CliRunner().invoke(app, ["parse", str(samples / capture)])
        assert result.exit_code == 0, result.stderr
        lines = result.stdout.splitlines()
        assert len(lines) == 795
        assert orjson.loads(lines[0])["event_name"] == "CellEditEvent"
        assert "839 lines: 795 events, 44 skipped, 0 dead letters" in result.stderr
        assert "CellEditEvent" in result.stderr
        assert "615" in result.stderr


def test_cli_reads_stdin_and_takes_the_docs_format(samples: Path, tmp_path: Path) -> None:
    config = tmp_path / "nebari-config.yml"
    config.write_text(
        f"telemetry:\n  jupyterlab_pioneer:\n    enabled: true\n    log_format: '{DOCS_FORMAT}'\n"
    )
    result = CliRunner().invoke(
        app, ["parse", "-", "--nebari-config", str(config)], input=(samples / "nebari-docs.log").read_text()
    )
    assert result.exit_code == 0, result.stderr
    assert {orjson.loads(line)["log_time_ms"] for line in result.stdout.splitlines()} == {1699963229039}


def test_cli_fails_on_an_unreadable_file(samples: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["parse", str(tmp_path / "missing.log"), str(samples / "alice.raw.log")])
    assert result.exit_code == 1
    assert "cannot read" in result.stderr
    assert "missing.log" in result.stderr
    assert len(result.stdout.splitlines()) == 795


def test_pod_metadata_from_a_kubelet_file_name(samples: Path, tmp_path: Path) -> None:
    kubelet_name = tmp_path / f"jupyter-alice--gpu_dev_notebook-{'ab' * 32}.log"
    kubelet_name.write_bytes((samples / "alice.cri.log").read_bytes())
    events = events_of(list(LineParser().parse_file(kubelet_name)))
    assert {(e["user"], e["pod"], e["namespace"], e["container"]) for e in events} == {
        ("alice", "jupyter-alice--gpu", "dev", "notebook")
    }
    pod = PodMeta(
        pod="jupyter-user-email-com---1a2b3c4d", annotations={"hub.jupyter.org/username": "user@email.com"}
    )
    events = events_of(list(LineParser().parse_file(kubelet_name, pod)))
    assert {e["user"] for e in events} == {"user@email.com"}


def test_cli_rejects_an_unreadable_nebari_config(samples: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["parse", str(samples / "nebari-docs.log"), "--nebari-config", str(tmp_path / "nope.yml")]
    )
    assert result.exit_code == 2
    assert "invalid parser settings" in result.stderr
    assert result.stdout == ""
