"""`bench/run_all.py` end to end at its smallest size (it starts its own Kafka): every contender must give
the ground truth's answer, and the report must be written. Speed is not asserted: CI machines are small
and shared, and the benchmark's figures are for reading, not for failing builds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONTENDERS = {"ours", "ours_publishing", "ours_pair", "quix", "faust", "aiokafka", "parse_only"}


@pytest.mark.kafka
@pytest.mark.timeout(300)
def test_smoke_run_gets_every_answer_right_and_writes_the_report(tmp_path: Path) -> None:
    json_out, markdown_out = tmp_path / "report.json", tmp_path / "benchmarks.md"
    command = [sys.executable, str(ROOT / "bench" / "run_all.py"), "--smoke",
               "--json-out", str(json_out), "--markdown-out", str(markdown_out)]  # fmt: skip
    finished = subprocess.run(command, capture_output=True, text=True, timeout=290, check=False)

    assert finished.returncode == 0, finished.stderr[-4000:]
    report = json.loads(json_out.read_text())
    assert set(report["contenders"]) == CONTENDERS
    for name, contender in report["contenders"].items():
        assert contender["correctness"] is True, (name, contender["problems"])
        assert contender["events_per_s"]["median"] > 0, name
    kafka_contenders = CONTENDERS - {"parse_only"}
    assert all(report["contenders"][name]["latency"] is not None for name in kafka_contenders - {"ours_pair"})
    assert report["contenders"]["ours_pair"]["latency"] is None
    assert all(report["contenders"][name]["recovery"] is not None for name in kafka_contenders)
    assert report["collector"]["problems"] == []
    page = markdown_out.read_text()
    assert "| contender | answer | events/s |" in page
    assert "## How to reproduce" in page
    for contender in report["contenders"].values():
        assert contender["label"] in page
