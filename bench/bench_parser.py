"""Parser throughput on one core, built from the real capture.

Input: the event lines and the server lines of alice.raw.log, repeated and shuffled 1:4 (one event line
per four server lines, as in a busy Nebari pod log). Cases, all ending in normalized records:
  (a) nebari_mixed: a whole stream: framing detection, line splitting, parsing,
      nebari_lines: `LineParser.parse` alone on the already split lines (what the collector calls),
  (b) cri_mixed: the same lines wrapped in CRI framing, as a whole stream,
  (c) orjson_decode: orjson.loads of the same event JSON alone, the reference limit (lines/s counted
      as if the four server lines per event came for free).

    .venv/bin/python bench/bench_parser.py [--lines 500000] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from streams.parser import LineParser

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"
SERVER_LINES_PER_EVENT = 4


def build_lines(count: int, seed: int = 7) -> tuple[list[bytes], list[bytes]]:
    """(mixed lines, the event lines among them)."""
    lines = (SAMPLES / "alice.raw.log").read_bytes().splitlines()
    events = [line for line in lines if b"eventDetail" in line]
    server = [line for line in lines if b"eventDetail" not in line]
    rng = random.Random(seed)
    n_events = count // (SERVER_LINES_PER_EVENT + 1)
    chosen_events = [rng.choice(events) for _ in range(n_events)]
    mixed = chosen_events + [rng.choice(server) for _ in range(n_events * SERVER_LINES_PER_EVENT)]
    rng.shuffle(mixed)
    return mixed, chosen_events


def cri_wrap(lines: list[bytes]) -> list[bytes]:
    return [b"2026-11-26T18:15:14.%09dZ stderr F %s" % (i % 10**9, line) for i, line in enumerate(lines)]


def best_rate(n_lines: int, run: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return n_lines / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=500_000, help="mixed lines per case")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the best counts")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    if not SAMPLES.is_dir():
        sys.exit(f"samples not found at {SAMPLES}")

    mixed, events = build_lines(args.lines)
    nebari = b"\n".join(mixed) + b"\n"
    cri = b"\n".join(cri_wrap(mixed)) + b"\n"
    messages = [line[line.index(b"{") :] for line in events]
    line_parser = LineParser()

    def parse_all(data: bytes) -> None:
        for result in line_parser.parse_stream(io.BytesIO(data), "bench"):
            if result is not None and not hasattr(result, "event_id"):
                raise SystemExit(f"unexpected dead letter: {result}")

    def parse_lines() -> None:
        parse = line_parser.parse
        for offset, line in enumerate(mixed):
            parse(line, "bench", offset)

    def decode_all() -> None:
        for message in messages:
            orjson.loads(message)

    rates = {
        "nebari_mixed": best_rate(len(mixed), lambda: parse_all(nebari), args.repeat),
        "nebari_lines": best_rate(len(mixed), parse_lines, args.repeat),
        "cri_mixed": best_rate(len(mixed), lambda: parse_all(cri), args.repeat),
        "orjson_decode": best_rate(len(mixed), decode_all, args.repeat),
    }
    if args.json:
        print(json.dumps({"lines": len(mixed), "events": len(events), "lines_per_s": rates}))
        return
    print(f"{len(mixed)} lines, {len(events)} events (1:{SERVER_LINES_PER_EVENT}), best of {args.repeat}")
    for case, rate in rates.items():
        print(f"  {case:14s} {rate:12,.0f} lines/s")


if __name__ == "__main__":
    main()
