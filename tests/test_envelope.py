"""What a raw-topic record may hold (streams.envelope)."""

from __future__ import annotations

import orjson

from streams.envelope import envelopes


def test_raw_records_hold_one_envelope_an_array_of_them_or_a_bare_line() -> None:
    envelope = {"log": "a line", "stream": "stderr"}
    assert envelopes(orjson.dumps(envelope)) == [envelope]
    assert envelopes(orjson.dumps([envelope, envelope])) == [envelope, envelope]
    assert envelopes(b"plain text line") == [{"log": b"plain text line"}]
    assert envelopes(b'[1, {"log": "x"}]') == [{"log": b"1"}, {"log": "x"}]
    assert envelopes(b"42") == [{"log": b"42"}]
