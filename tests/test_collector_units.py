"""Collector pieces that need no broker: line assembly, edge redaction, pod filter, checkpoints."""

from __future__ import annotations

import asyncio
import errno
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.checkpoint import CheckpointStore, FilePosition
from collector.edge import PodFilter, may_be_event, redact_line, shrink_line
from collector.lines import LineAssembler, LogLine
from collector.tail import FileTailer, FollowedFile
from streams.framing import Deframer

EVENT = (
    '2026-11-26 18:15:23,471      INFO   20 jupyter_jupyterlab_pioneer_config: {"eventDetail": '
    '{"eventName": "NotebookOpenEvent", "eventTime": 1795716923416, "eventInfo": {"environ": '
    '{"LANG": "C.UTF-8", "JUPYTERHUB_API_TOKEN": "99e2b2e16d77e1524be106d38960fc8f", "HOME": "/home/jovyan"}}}, '
    '"notebookState": {"sessionID": "s-1", "notebookPath": "a.ipynb", "notebookContent": null}}'
)
SERVER = "[I 2026-11-26 18:15:14.264 ServerApp] jupyter_lsp | extension was successfully linked."


def cri(content: str, tag: str = "F", stream: str = "stderr") -> bytes:
    return f"2026-11-26T18:15:23.471000001Z {stream} {tag} {content}\n".encode()


def assemble(data: bytes, chunk: int, max_line_bytes: int = 1 << 20) -> list[tuple[str, int, str]]:
    assembler = LineAssembler("src", {}, max_line_bytes)
    lines = []
    for start in range(0, len(data), chunk):
        lines += assembler.feed(data[start : start + chunk])
    lines += assembler.finish()
    return [(line.log, line.offset, line.stream) for line in lines]


@pytest.mark.parametrize("chunk", [1, 7, 100, 1 << 20])
def test_partial_cri_lines_are_reassembled_whatever_the_read_size(chunk: int) -> None:
    head, tail = EVENT[:150], EVENT[150:]
    data = cri(SERVER) + cri(head, "P") + cri("stdout line", stream="stdout") + cri(tail) + cri(SERVER)
    first_chunk_offset = len(cri(SERVER))
    assert assemble(data, chunk) == [
        (SERVER, 0, "stderr"),
        ("stdout line", first_chunk_offset + len(cri(head, "P")), "stdout"),
        (EVENT, first_chunk_offset, "stderr"),
        (SERVER, len(data) - len(cri(SERVER)), "stderr"),
    ]


def test_docker_partials_and_a_last_line_without_newline() -> None:
    def docker(log: str) -> bytes:
        return json.dumps({"log": log, "stream": "stderr", "time": "2026-11-26T18:15:23.4Z"}).encode() + b"\n"

    data = docker(EVENT[:80]) + docker(EVENT[80:] + "\n") + b"plain tail without newline"
    lines = assemble(data, 13)
    assert [line[0] for line in lines] == [EVENT, "plain tail without newline"]


def test_an_overlong_line_is_cut_and_the_rest_skipped_with_memory_bounded() -> None:
    data = b"a" * 5000 + b"\n" + SERVER.encode() + b"\n"
    assembler = LineAssembler("src", {}, max_line_bytes=1000)
    lines = []
    for start in range(0, len(data), 300):
        lines += assembler.feed(data[start : start + 300])
        assert len(assembler._buffer) <= 1301
    assert [(len(line.log), line.offset) for line in lines] == [(1001, 0), (len(SERVER), 5001)]


def test_unfinished_offset_never_passes_a_line_waiting_for_its_chunks() -> None:
    assembler = LineAssembler("src", {}, 1 << 20)
    assembler.feed(cri(SERVER) + cri(EVENT[:100], "P") + b"2026-11-26T18:15:23Z stderr F partial-physical")
    assert assembler.unfinished_offset() == len(cri(SERVER))
    assembler.feed(b"-line\n" + cri(EVENT[100:]))
    assert assembler.unfinished_offset() == assembler.offset


def test_committed_offset_waits_for_kafka_acks(tmp_path: Path) -> None:
    async def scenario() -> list[int]:
        path = tmp_path / "x.log"
        path.write_bytes(cri(SERVER) * 3)
        followed = FollowedFile(str(path), path.open("rb"), 0, {}, 1 << 20)
        lines = followed.read_lines(1 << 20)
        loop = asyncio.get_running_loop()
        first, second = loop.create_future(), loop.create_future()
        followed.inflight.extend([_inflight(lines[0].offset, first), _inflight(lines[2].offset, second)])
        seen = [followed.committed_offset()]
        first.set_result(None)
        seen.append(followed.committed_offset())
        second.set_result(None)
        seen.append(followed.committed_offset())
        followed.handle.close()
        return seen

    line = len(cri(SERVER))
    assert asyncio.run(scenario()) == [0, 2 * line, 3 * line]


def _inflight(offset: int, ack: asyncio.Future[None]) -> object:
    from collector.tail import _InFlight  # noqa: PLC0415

    return _InFlight(offset, ack)


def test_redact_line_removes_secrets_and_keeps_the_prefix() -> None:
    redacted = redact_line(EVENT)
    assert "99e2b2e16d77e1524be106d38960fc8f" not in redacted
    assert "JUPYTERHUB_API_TOKEN" not in redacted
    prefix, _, body = redacted.partition("jupyter_jupyterlab_pioneer_config: ")
    assert prefix == "2026-11-26 18:15:23,471      INFO   20 "
    assert json.loads(body)["eventDetail"]["eventInfo"]["environ"] == {"LANG": "C.UTF-8"}
    assert redact_line(SERVER) == SERVER


@pytest.mark.parametrize("cut", [120, 200, 260, len(EVENT) - 3])
def test_redact_line_scrubs_truncated_events_as_text(cut: int) -> None:
    assert "99e2b2e16d77e1524be106d38960fc8f" not in redact_line(EVENT[:cut])


def test_redact_line_handles_the_command_line_exporters_dict_repr() -> None:
    event = {
        "eventDetail": {"eventName": "NotebookOpenEvent", "eventInfo": {"environ": {"ARGO_TOKEN": "s3cr3t"}}}
    }
    assert "s3cr3t" not in redact_line(repr(event))


def test_shrink_line_drops_content_but_keeps_the_event() -> None:
    notebook = {"cells": [{"source": "x" * 10_000}]}
    event = {
        "eventDetail": {"eventName": "NotebookSaveEvent", "eventTime": 1, "eventInfo": None},
        "notebookState": {"sessionID": "s", "notebookPath": "a.ipynb", "notebookContent": notebook},
    }
    shrunk = shrink_line("prefix: " + json.dumps(event))
    assert len(shrunk) < 200
    assert json.loads(shrunk.removeprefix("prefix: "))["eventDetail"]["eventName"] == "NotebookSaveEvent"


def test_pre_filter_and_pod_filter() -> None:
    assert may_be_event(EVENT)
    assert not may_be_event(SERVER)
    nebari = PodFilter(["dev"], "jupyter-*", ["notebook"])
    assert nebari.accepts(
        {"pod_name": "jupyter-alice", "namespace_name": "dev", "container_name": "notebook"}
    )
    assert not nebari.accepts({"pod_name": "hub-5d4", "namespace_name": "dev", "container_name": "hub"})
    assert not nebari.accepts(
        {"pod_name": "jupyter-alice", "namespace_name": "prod", "container_name": "notebook"}
    )
    assert nebari.accepts({"pod_name": None, "namespace_name": None, "container_name": None})


def test_checkpoints_round_trip_atomically(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "state" / "positions.json")
    assert store.load() == {}
    positions = [FilePosition("/var/log/containers/a.log", 1, 42, 1000), FilePosition("/b.log", 1, 43, 0)]
    store.save(positions)
    assert store.load() == {p.key: p for p in positions}
    assert [p.name for p in store.path.parent.iterdir()] == ["positions.json"]


_PHYSICAL_LINES = st.one_of(
    st.builds(
        cri,
        st.text(alphabet=st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)), max_size=90),
        st.sampled_from(["F", "F", "F", "P"]),
        st.sampled_from(["stdout", "stderr"]),
    ),
    st.binary(max_size=40).map(lambda raw: raw.replace(b"\n", b" ") + b"\n"),  # not CRI at all
    st.just(b"\n"),
    st.just(cri("y" * 100 + " stderr F a whole CRI line inside an overlong one")),
)


@settings(max_examples=300, deadline=None)
@given(physical=st.lists(_PHYSICAL_LINES, max_size=30), chunk=st.integers(1, 300))
def test_the_cri_fast_path_yields_exactly_what_the_deframer_does(physical: list[bytes], chunk: int) -> None:
    """Whole CRI lines skip `Deframer` (one short match and a find each); with partials, odd and overlong lines
    (max_line_bytes 64) and any read size, the lines must be the same as through `Deframer` alone."""
    data = cri("first line") + b"".join(physical)
    fast = assemble(data, chunk, max_line_bytes=64)
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(Deframer, "takes_full_cri_lines", lambda self: False)
        assert assemble(data, chunk, max_line_bytes=64) == fast


class _AckingSink:
    """A LineSink whose every submission is acknowledged at once; remembers the offsets it got."""

    def __init__(self) -> None:
        self.offsets: list[int] = []

    async def submit(self, lines: Sequence[LogLine]) -> asyncio.Future[None]:
        self.offsets += [line.offset for line in lines]
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def flush(self) -> None:
        return None


class _FullDisk(CheckpointStore):
    full = False

    def save(self, positions: list[FilePosition]) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        super().save(positions)


def test_a_checkpoint_that_cannot_be_written_pauses_reading_and_loses_nothing(tmp_path: Path) -> None:
    """Disk full: the tailer neither dies (a collector alive but reading nothing) nor reads on without
    a checkpoint; once the checkpoint can be written, it reads on from where it stopped."""
    log_file = tmp_path / "jupyter-zoe_dev_notebook-0123.log"
    line = b"2026-01-05T09:00:00.000000000Z stderr F " + b"x" * 40 + b"\n"
    log_file.write_bytes(line * 10)
    store = _FullDisk(tmp_path / "positions.json")
    sink = _AckingSink()

    async def scenario() -> None:
        tailer = FileTailer([str(tmp_path / "*.log")], sink, store, PodFilter([], "*", []), start_at="beginning",
                            poll_interval_s=0.01, checkpoint_interval_s=0.05)  # fmt: skip
        stop = asyncio.Event()
        task = asyncio.create_task(tailer.run(stop))
        await _until(lambda: len(sink.offsets) == 10 and _saved_offset(store) == 10 * len(line))
        store.full = True
        await _until(lambda: tailer.checkpoint_failing)
        with log_file.open("ab") as out:
            out.write(line * 5)
        await asyncio.sleep(0.5)
        assert len(sink.offsets) == 10  # nothing read while the checkpoint cannot be written
        assert not task.done()
        assert _saved_offset(store) == 10 * len(line)  # the last good checkpoint stays
        store.full = False
        await _until(lambda: len(sink.offsets) == 15)
        stop.set()
        await task

    asyncio.run(asyncio.wait_for(scenario(), 30))
    assert sink.offsets == [n * len(line) for n in range(15)]  # each line once, in order
    assert _saved_offset(store) == 15 * len(line)


def _saved_offset(store: CheckpointStore) -> int | None:
    positions = list(store.load().values())
    return positions[0].offset if positions else None


async def _until(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")
