"""The simulator's ground truth against the pipeline: simulated pod logs, collected, counted by a worker,
and every aggregate the API returns compared with the truth file."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from pioneer_base.config import KafkaSettings
from streams.topics import TopicSettings
from tests.clock import iso, recent_hour
from tests.helpers import CollectorThread, ReadsApi, consume_envelopes, settings_for


def simulate(out_dir: Path, *shape: str, users: int = 4, minutes: int = 6, seed: int = 7) -> dict[str, Any]:
    """Simulated pod logs (CRI files, unless `shape` says otherwise) and their ground truth, written by
    `pioneer-telemetry simulate`."""
    truth = out_dir / "truth.json"
    subprocess.run(
        [sys.executable, "-m", "pioneer_telemetry", "simulate", "--users", str(users), "--seed", str(seed),
         "--duration", str(minutes * 60), "--rate", "0", "--out-dir", str(out_dir), "--truth", str(truth),
         "--start", iso(recent_hour()), *shape],
        check=True, capture_output=True,
    )  # fmt: skip
    return json.loads(truth.read_text())


def iso_ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def truth_range(truth: dict[str, Any]) -> dict[str, int]:
    return {"from_ms": iso_ms(truth["start"]) // 60_000 * 60_000, "to_ms": iso_ms(truth["end"]) + 60_000}


def all_counted(truth: dict[str, Any]) -> Any:
    def check(worker: ReadsApi) -> bool:
        overview = worker.get("overview", **truth_range(truth))
        return overview["current"]["events"] >= truth["total"]

    return check


def assert_equals_truth(worker: ReadsApi, truth: dict[str, Any]) -> None:
    """Every aggregate the API returns equals the simulator's ground truth."""
    span = truth_range(truth)
    slug = {user: pod["slug"] for user, pod in truth["pods"].items()}

    points = {p["start_ms"]: p for p in worker.get("timeseries", **span)["points"]}
    for minute, expected in truth["windows"].items():
        point = points[iso_ms(minute)]
        assert point["events"] == expected["total"], minute
        assert point["events_by_name"] == dict(sorted(expected["by_event"].items())), minute
        assert point["active_users"] == expected["users"], minute
        assert point["active_sessions"] == expected["sessions"], minute
        assert point["active_notebooks"] == expected["notebooks"], minute
        assert (point["executions"], point["failures"]) == (expected["executions"], expected["failures"]), (
            minute
        )
    assert sum(p["events"] for p in points.values()) == truth["total"]

    overview = worker.get("overview", **span)["current"]
    assert overview["events"] == truth["total"]
    assert overview["events_by_name"] == dict(sorted(truth["by_event"].items()))
    assert overview["failures_by_error"] == dict(sorted(truth["failures_by_error"].items()))
    assert (overview["active_users"], overview["active_sessions"]) == (
        len(truth["by_user"]),
        len(truth["by_session"]),
    )
    assert overview["late"] == overview["duplicates"] == 0

    users = {row["user"]: row for row in worker.get("top", dimension="users", limit=1000, **span)["rows"]}
    assert {u: users[slug[u]]["events"] for u in truth["by_user"]} == truth["by_user"]
    for user, expected in truth["executions_by_user"].items():
        detail = worker.get(f"users/{slug[user]}", **span)
        assert (detail["executions"], detail["failures"]) == (expected["executions"], expected["failures"])
        assert detail["events"] == truth["by_user"][user]

    notebooks = worker.get("top", dimension="notebooks", limit=1000, **span)["rows"]
    by_notebook = {(row["user"], row["notebook"]): row for row in notebooks}
    for user, paths in truth["by_notebook"].items():
        for path, events in paths.items():
            row = by_notebook[(slug[user], path)]
            expected = (
                truth["executions_by_notebook"].get(user, {}).get(path, {"executions": 0, "failures": 0})
            )
            assert (row["events"], row["executions"], row["failures"]) == (
                events, expected["executions"], expected["failures"],
            ), (user, path)  # fmt: skip
    assert len(notebooks) == sum(len(paths) for paths in truth["by_notebook"].values())


def collect(kafka_broker: str | KafkaSettings, topics: TopicSettings, log_dir: Path, tmp_path: Path) -> None:
    """The collector forwards the simulated files to the raw topic, then stops."""
    expected = sum(1 for path in log_dir.glob("*.log") for line in path.open() if "eventDetail" in line)
    collector = CollectorThread(settings_for(log_dir, tmp_path), kafka_broker, topics)
    try:
        assert len(consume_envelopes(kafka_broker, topics.raw, expected=expected)) == expected
    finally:
        collector.stop()
