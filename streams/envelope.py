"""What a raw-topic record holds: log lines in Fluent Bit's kafka-output shape.

A record is one envelope (`log`, `stream`, `time`, `kubernetes`, and from our collector `source`),
as Fluent Bit's kafka output writes it, or a JSON array of such envelopes, as our collector writes
them: consecutive lines of one source, in order, so that Kafka and every consumer pay their
per-message cost once per batch of lines instead of once per line. A record that is not JSON is
taken as one bare log line (a `kcat -P` of a log file, say).
"""

from __future__ import annotations

from typing import Any

import orjson

Envelope = dict[str, Any]


def envelopes(value: bytes | str) -> list[Envelope]:
    """The envelopes of one raw record; anything that is not an envelope becomes a bare `log`, which
    the parser then skips or dead-letters with its reason."""
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError:
        return [{"log": value}]
    if isinstance(decoded, dict):
        return [decoded]
    if isinstance(decoded, list):
        return [item if isinstance(item, dict) else {"log": orjson.dumps(item)} for item in decoded]
    return [{"log": value}]
