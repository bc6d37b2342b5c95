"""Container-runtime framing: detection, unwrapping, partial-line reassembly, bounds."""

from __future__ import annotations

import io

import orjson
import pytest

from streams.framing import Deframer, Framing, LogLine, Reassembler, detect_framing, read_lines, rfc3339_to_ms

T = b"2026-11-26T18:15:14.27234178Z"


def cri(stream: bytes, tag: bytes, content: bytes) -> bytes:
    return b"%s %s %s %s\n" % (T, stream, tag, content)


def docker(log: str, stream: str = "stderr") -> bytes:
    return orjson.dumps({"log": log, "stream": stream, "time": T.decode()}) + b"\n"


def lines_of(data: bytes, max_line_bytes: int = 1 << 20) -> list[LogLine]:
    return list(read_lines(io.BytesIO(data), max_line_bytes))


@pytest.mark.parametrize(
    ("first", "framing"),
    [
        (cri(b"stderr", b"F", b"[I 2026 ServerApp] hi"), Framing.CRI),
        (cri(b"stdout", b"P", b"x"), Framing.CRI),
        (docker("hi\n"), Framing.DOCKER),
        (b"2026-11-26 17:52:50,159      INFO   20 m: {}\n", Framing.PLAIN),
        (b'{"eventDetail": {}}\n', Framing.PLAIN),
        (b"\xff\xfe garbage\n", Framing.PLAIN),
    ],
)
def test_detect_framing(first: bytes, framing: Framing) -> None:
    assert detect_framing(first) is framing


def test_cri_partials_are_joined_per_stream_at_the_first_chunk_offset() -> None:
    physical = [
        cri(b"stderr", b"P", b"event-"),
        cri(b"stdout", b"P", b"out-"),
        cri(b"stderr", b"P", b"part-"),
        cri(b"stdout", b"F", b"done"),
        cri(b"stderr", b"F", b"end"),
    ]
    lines = lines_of(b"".join(physical))
    offsets = [sum(len(p) for p in physical[:i]) for i in range(len(physical))]
    assert [(line.content, line.stream, line.offset) for line in lines] == [
        (b"out-done", "stdout", offsets[1]),
        (b"event-part-end", "stderr", offsets[0]),
    ]
    assert lines[0].time == T.decode()


def test_docker_partials_are_the_logs_without_newline() -> None:
    data = docker("ab", "stderr") + docker("whole\n", "stdout") + docker("cd\n", "stderr") + docker("\n")
    assert [(line.content, line.stream) for line in lines_of(data)] == [
        (b"whole", "stdout"),
        (b"abcd", "stderr"),
        (b"", "stderr"),
    ]


def test_plain_lines_keep_their_offsets_and_blank_lines_before_detection_are_skipped() -> None:
    data = b"\n\nfirst\n\nsecond"
    assert [(line.content, line.offset) for line in lines_of(data)] == [
        (b"first", 2),
        (b"", 8),
        (b"second", 9),
    ]


def test_lines_that_do_not_fit_the_framing_pass_through() -> None:
    data = cri(b"stderr", b"F", b"ok") + b"not cri at all\n" + cri(b"stderr", b"X", b"bad tag")
    assert [line.content for line in lines_of(data)] == [
        b"ok",
        b"not cri at all",
        cri(b"stderr", b"X", b"bad tag")[:-1],
    ]
    data = docker("ok\n") + b'{"log": 3}\n' + b"{truncated\n"
    assert [line.content for line in lines_of(data)] == [b"ok", b'{"log": 3}', b"{truncated"]


def test_reassembled_lines_over_the_limit_are_cut_to_limit_plus_one() -> None:
    reassembler = Reassembler(max_line_bytes=10)
    for i in range(100):  # memory stays bounded however many partials come
        assert reassembler.feed("stderr", b"0123456789", partial=True, offset=i) is None
    line = reassembler.feed("stderr", b"tail", partial=False, offset=999)
    assert line == LogLine(b"01234567890", 0, "stderr", None)
    assert reassembler.feed("stderr", b"short", partial=False, offset=5) == LogLine(
        b"short", 5, "stderr", None
    )


def test_unfinished_partials_are_flushed_in_offset_order() -> None:
    reassembler = Reassembler(max_line_bytes=100)
    reassembler.feed("stdout", b"late", partial=True, offset=50)
    reassembler.feed("stderr", b"early", partial=True, offset=10)
    assert reassembler.flush() == [
        LogLine(b"early", 10, "stderr", None),
        LogLine(b"late", 50, "stdout", None),
    ]
    assert reassembler.flush() == []
    data = cri(b"stderr", b"F", b"x") + cri(b"stderr", b"P", b"never finished")
    assert [line.content for line in lines_of(data)] == [b"x", b"never finished"]


def test_an_overlong_physical_line_is_cut_and_its_rest_skipped() -> None:
    data = b"short\n" + b"y" * 50 + b"\n" + b"after\n"
    assert [(line.content, line.offset) for line in lines_of(data, max_line_bytes=20)] == [
        (b"short", 0),
        (b"y" * 21, 6),
        (b"after", 57),
    ]
    exactly = b"z" * 20 + b"\n"
    assert [line.content for line in lines_of(exactly, max_line_bytes=20)] == [b"z" * 20]


def test_deframer_is_fed_one_physical_line_at_a_time() -> None:
    deframer = Deframer(Framing.CRI, max_line_bytes=1000)
    assert deframer.feed(cri(b"stderr", b"P", b"a"), 0) is None
    assert deframer.feed(cri(b"stderr", b"F", b"b"), 40) == LogLine(b"ab", 0, "stderr", T.decode())
    assert Deframer(Framing.PLAIN, 1000).feed(b"plain\n", 7) == LogLine(b"plain", 7)


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2026-11-26T18:15:14.27234178Z", 1795716914272),
        ("2026-11-26T18:15:14Z", 1795716914000),
        ("2026-11-26T19:15:14.5+01:00", 1795716914500),
        ("yesterday", None),
        ("\ufffd", None),
    ],
)
def test_rfc3339_to_ms(text: str, ms: int | None) -> None:
    assert rfc3339_to_ms(text) == ms


def test_pending_offset_is_where_the_oldest_unfinished_line_starts() -> None:
    deframer = Deframer(Framing.CRI, max_line_bytes=1000)
    assert deframer.pending_offset() is None
    deframer.feed(cri(b"stdout", b"P", b"a"), 100)
    deframer.feed(cri(b"stderr", b"P", b"b"), 140)
    assert deframer.pending_offset() == 100
    deframer.feed(cri(b"stdout", b"F", b"c"), 180)
    assert deframer.pending_offset() == 140
    deframer.feed(cri(b"stderr", b"F", b"d"), 220)
    assert deframer.pending_offset() is None
