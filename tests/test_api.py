"""The read API by namespace: windows count each namespace apart and merge by sum, windows stored before
namespaces were counted are still read, and against a real worker every endpoint's numbers, per
namespace, equal what the simulator's users did (tests/simulated.py)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streams.aggregate import add_event, empty_window, entity_share, merge_into, summary
from streams.api import TimeRange, namespaces, notebook_detail, user_detail
from streams.schema import PioneerEvent, SourcePosition
from tests.helpers import WorkerProcess
from tests.simulated import MINUTES, NAMESPACES, START_MS, Simulated, counts, distinct

T0 = START_MS
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WHOLE = {"from_ms": START_MS, "to_ms": START_MS + MINUTES * MINUTE}


def event(
    name: str, user: str, namespace: str | None, *, path: str = "a.ipynb", session: str = "s1",
    success: bool | None = None, error: str | None = None,
) -> PioneerEvent:  # fmt: skip
    return PioneerEvent(
        schema_version="1", event_id="e", event_name=name, event_time_ms=T0 + 900, log_time_ms=T0 + 1000, session_id=session,
        notebook_path=path, cell_ids=[], cell_indices=[], success=success, error_name=error, user=user,
        pod=f"jupyter-{user}", namespace=namespace, container="notebook",
        source=SourcePosition(id="f", offset=0), info=None, notebook_content=None,
    )  # fmt: skip


def stored(*events: PioneerEvent) -> dict[str, Any]:
    """One partition's window as the worker stores it (JSON bytes, read back)."""
    window = empty_window()
    for e in events:
        add_event(window, e)
    return orjson.loads(orjson.dumps(window))


def check(actual: dict[str, Any], expected: dict[str, Any], *context: object) -> None:
    """`actual` has the fields of `expected`, with the same values (and may have more)."""
    assert {key: actual.get(key) for key in expected} == expected, context


def test_a_window_counts_each_namespace_apart_and_partials_merge_by_sum() -> None:
    first = stored(
        event("CellEditEvent", "alice", "dev"),
        event("CellExecuteEvent", "alice", "dev", success=True),
        event("CellExecuteEvent", "alice", "research", session="s2", success=False, error="NameError"),
    )
    second = stored(event("NotebookSaveEvent", "bob", "dev", path="b.ipynb", session="s3"))
    merged = merge_into(merge_into(empty_window(), first), second)
    dev = {"events": 3, "active_users": 2, "active_sessions": 2, "active_notebooks": 2, "executions": 1,
           "failures": 0, "edits": 1}  # fmt: skip
    check(summary(merged, "dev"), dev)
    research = {"events": 1, "executions": 1, "failures": 1, "failures_by_error": {"NameError": 1}}
    check(summary(merged, "research"), research)
    # alice's a.ipynb in both namespaces is one user and one notebook of the whole platform
    both = {"events": 4, "active_users": 2, "active_sessions": 3, "active_notebooks": 2, "failures": 1}
    check(summary(merged), both)
    assert summary(merged, "nowhere")["events"] == 0
    assert namespaces({T0: merged}) == [
        {"namespace": "dev", "events": 3, "active_users": 2},
        {"namespace": "research", "events": 1, "active_users": 1},
    ]
    span = TimeRange(T0, T0 + MINUTE, "minute")
    alice = {"events": 1, "events_by_name": {"CellExecuteEvent": 1}, "active_sessions": 1, "failures": 1,
             "sessions": ["s2"]}  # fmt: skip
    detail = user_detail(span, {T0: merged}, {}, "alice", "research")
    check(detail, alice)
    assert detail["previous"]["events"] == 0
    notebook = notebook_detail(span, {T0: merged}, {T0 - MINUTE: merged}, "a.ipynb", None)
    assert (notebook["events"], notebook["active_users"], notebook["active_sessions"]) == (3, 1, 2)
    assert notebook["previous"]["events"] == 3


# A minute window as the worker stored it before namespaces were counted.
OLD_WINDOW = {
    "o": 41, "events": {"CellExecuteEvent": 2, "NotebookSaveEvent": 1},
    "users": {"zoe": [3, 2, 1, T0 + 5000]}, "sessions": {"s-old": "zoe"},
    "notebooks": {"zoe\x1fold.ipynb": [3, 2, 1, {"NameError": 1}]}, "errors": {"NameError": 1},
    "executions": 2, "failures": 1, "edits": 0, "skew": [30, 3, 20], "late": 1, "duplicates": 0,
    "dead_letters": 2,
}  # fmt: skip


def test_windows_stored_before_namespaces_are_still_read_and_updated() -> None:
    old = merge_into(empty_window(), orjson.loads(orjson.dumps(OLD_WINDOW)))
    numbers = {"events": 3, "active_users": 1, "active_sessions": 1, "active_notebooks": 1, "executions": 2,
               "failures": 1, "late": 1, "dead_letters": 2}  # fmt: skip
    check(summary(old), numbers)
    assert namespaces({T0: old}) == [{"namespace": None, "events": 3, "active_users": 1}]
    zoe = user_detail(TimeRange(T0, T0 + MINUTE, "minute"), {T0: old}, {}, "zoe", None)
    assert (zoe["events"], zoe["sessions"], zoe["active_minutes"]) == (3, ["s-old"], 1)
    assert zoe["events_by_name"] == {}  # not broken down by name then

    updated = orjson.loads(orjson.dumps(OLD_WINDOW))  # a restarted worker adds to a stored old window
    add_event(updated, event("CellEditEvent", "zoe", "dev", path="old.ipynb"))
    merged = merge_into(empty_window(), orjson.loads(orjson.dumps(updated)))
    assert (summary(merged)["events"], summary(merged, "dev")["events"], summary(merged)["late"]) == (4, 1, 1)
    assert summary(merged)["active_notebooks"] == 1


def test_a_user_or_notebook_page_from_their_share_equals_the_page_from_whole_windows() -> None:
    """The API merges only a user's or a notebook's share of each stored window (`entity_share`): their
    pages must not change, in any namespace, old windows included, and the stored windows stay as they were."""
    partitions = [
        stored(
            event("CellEditEvent", "alice", "dev"),
            event("CellExecuteEvent", "alice", "dev", success=False, error="NameError"),
            event("CellExecuteEvent", "bob", "research", path="b.ipynb", session="s2", success=True),
        ),
        stored(
            event("NotebookSaveEvent", "alice", "research", path="b.ipynb", session="s3"),
            event("CellEditEvent", "bob", "dev", path="a.ipynb", session="s4"),
            event("CellAddEvent", "carol", None, path="c.ipynb", session="s5"),
        ),
        orjson.loads(orjson.dumps(OLD_WINDOW)),
    ]
    before = orjson.dumps(partitions)
    span = TimeRange(T0, T0 + 2 * MINUTE, "minute")

    def windows(share: Any = lambda window: window) -> dict[int, Any]:
        current = empty_window()
        for window in partitions:
            merge_into(current, share(window))
        return {T0: current, T0 + MINUTE: merge_into(empty_window(), share(partitions[0]))}

    pages = 0
    for namespace in (None, "dev", "research", ""):
        for user in ("alice", "bob", "carol", "zoe", "nobody"):
            whole = user_detail(span, windows(), windows(), user, namespace)
            shared = windows(lambda window, user=user: entity_share(window, user=user))
            assert user_detail(span, shared, shared, user, namespace) == whole, (user, namespace)
            pages += whole["found"]
        for path in ("a.ipynb", "b.ipynb", "c.ipynb", "old.ipynb", "none.ipynb"):
            whole = notebook_detail(span, windows(), windows(), path, namespace)
            shared = windows(lambda window, path=path: entity_share(window, notebook=path))
            assert notebook_detail(span, shared, shared, path, namespace) == whole, (path, namespace)
            pages += whole["found"]
    assert pages > 10  # most of the pages asked for have numbers: the comparison compares something
    alice, b = entity_share(partitions[0], user="alice"), entity_share(partitions[1], notebook="b.ipynb")
    assert {user for part in alice["namespaces"].values() for user in part["users"]} == {"alice"}
    assert {key for part in alice["namespaces"].values() for key in part["notebooks"]} == {"alice\x1fa.ipynb"}
    assert {key for part in b["namespaces"].values() for key in part["notebooks"]} == {"alice\x1fb.ipynb"}
    assert orjson.dumps(partitions) == before


# -- against a real worker ---------------------------------------------------------------------------


@pytest.mark.kafka
def test_without_a_resolution_the_api_answers_by_the_minute_wherever_the_worker_holds_minutes(
    namespaced: tuple[WorkerProcess, Simulated],
) -> None:
    """What the worker holds follows stream time: the simulated minutes are three days old by the wall
    clock and still held."""
    worker, _ = namespaced
    health = worker.get("health")
    stream_time = max(info["stream_time_ms"] or 0 for info in health["partitions"].values())
    assert START_MS < stream_time <= START_MS + MINUTES * MINUTE
    held = health["held_from_ms"]
    assert held["minute"] == -(-(stream_time - 24 * HOUR) // MINUTE) * MINUTE
    assert held["hour"] == -(-(stream_time - 35 * 24 * HOUR) // HOUR) * HOUR
    assert held["day"] == -(-(stream_time - 400 * 24 * HOUR) // DAY) * DAY  # days of UTC, by default
    assert worker.get("timeseries", **WHOLE)["resolution"] == "minute"
    day = {"from_ms": START_MS, "to_ms": START_MS + 24 * HOUR}
    assert worker.get("timeseries", **day)["resolution"] == "minute"
    longer = {"from_ms": START_MS, "to_ms": START_MS + 25 * HOUR}
    assert worker.get("timeseries", **longer)["resolution"] == "hour"
    expired = {"from_ms": held["minute"] - MINUTE, "to_ms": held["minute"] + HOUR}
    assert worker.get("timeseries", **expired)["resolution"] == "hour"
    minutes = worker.get("timeseries", resolution="minute", **expired)  # asked for: answered as asked
    assert (minutes["resolution"], len(minutes["points"])) == ("minute", 61)
    months = {"from_ms": START_MS - 40 * DAY, "to_ms": START_MS + DAY}
    by_day = worker.get("timeseries", **months)
    days_touched = (months["to_ms"] - 1) // DAY - months["from_ms"] // DAY + 1  # UTC days
    assert (by_day["resolution"], len(by_day["points"])) == ("day", days_touched)
    assert sum(point["events"] for point in by_day["points"]) == sum(
        p["events"] for p in worker.get("timeseries", **WHOLE)["points"]
    )


@pytest.mark.kafka
def test_overview_timeseries_and_top_equal_the_truth_per_namespace(
    namespaced: tuple[WorkerProcess, Simulated],
) -> None:
    worker, simulated = namespaced
    for namespace, truth in simulated.truths.items():
        facts = simulated.where(namespace)
        assert len(facts) == truth["total"]  # the model's events are those the truth file counts
        overview = worker.get("overview", namespace=namespace, **WHOLE)["current"]
        check(overview, counts(facts) | distinct(facts), namespace)
        assert overview["events_by_name"] == truth["by_event"]

        points = worker.get("timeseries", namespace=namespace, **WHOLE)["points"]
        assert len(points) == MINUTES
        for point in points:
            minute = simulated.where(namespace, from_ms=point["start_ms"], to_ms=point["start_ms"] + MINUTE)
            check(point, counts(minute) | distinct(minute), namespace, point["start_ms"])

        top = {
            dimension: worker.get("top", dimension=dimension, limit=1000, namespace=namespace, **WHOLE)[
                "rows"
            ]
            for dimension in ("users", "notebooks", "errors")
        }
        assert {row["user"] for row in top["users"]} == {f.user for f in facts}
        for row in top["users"]:
            expected = counts(simulated.where(namespace, row["user"]))
            check(row, {key: expected[key] for key in ("events", "executions", "failures")}, row)
        assert {(row["user"], row["notebook"]): row["events"] for row in top["notebooks"]} == {
            (f.user, f.path): len(simulated.where(namespace, f.user, f.path)) for f in facts
        }
        assert {row["error"]: row["failures"] for row in top["errors"]} == truth["failures_by_error"]


@pytest.mark.kafka
def test_drill_downs_per_namespace_with_names_sessions_and_the_previous_period(
    namespaced: tuple[WorkerProcess, Simulated],
) -> None:
    """Every user's and notebook path's page for the second half of the simulation, compared with the
    first half."""
    worker, simulated = namespaced
    half, end = START_MS + MINUTES // 2 * MINUTE, START_MS + MINUTES * MINUTE
    for namespace in NAMESPACES:
        for user in sorted({f.user for f in simulated.where(namespace)}):
            detail = worker.get(f"users/{user}", namespace=namespace, from_ms=half, to_ms=end)
            for numbers, lo, hi in ((detail, half, end), (detail["previous"], START_MS, half)):
                facts = simulated.where(namespace, user, from_ms=lo, to_ms=hi)
                expected = counts(facts) | {
                    "active_notebooks": len({f.path for f in facts}),
                    "active_minutes": len({f.minute_ms for f in facts}),
                }
                check(numbers, expected, namespace, user, lo)
            for point in detail["timeline"]:
                minute = simulated.where(
                    namespace, user, from_ms=point["start_ms"], to_ms=point["start_ms"] + MINUTE
                )
                check(point, counts(minute), namespace, user, point["start_ms"])
        for path in sorted({f.path for f in simulated.where(namespace)}):
            detail = worker.get("notebooks", path=path, namespace=namespace, from_ms=half, to_ms=end)
            for numbers, lo, hi in ((detail, half, end), (detail["previous"], START_MS, half)):
                facts = simulated.where(namespace, path=path, from_ms=lo, to_ms=hi)
                check(
                    numbers,
                    counts(facts) | {"active_users": len({f.user for f in facts})},
                    namespace,
                    path,
                    lo,
                )
            for point in detail["timeline"]:
                minute = simulated.where(
                    namespace, path=path, from_ms=point["start_ms"], to_ms=point["start_ms"] + MINUTE
                )
                check(point, counts(minute), namespace, path, point["start_ms"])


@pytest.mark.kafka
def test_namespaces_are_listed_and_without_a_filter_both_count(
    namespaced: tuple[WorkerProcess, Simulated],
) -> None:
    worker, simulated = namespaced
    listed = [
        {
            "namespace": ns,
            "events": len(simulated.where(ns)),
            "active_users": distinct(simulated.where(ns))["active_users"],
        }
        for ns in NAMESPACES
    ]
    assert worker.get("namespaces", **WHOLE)["namespaces"] == sorted(listed, key=lambda row: -row["events"])
    check(worker.get("overview", **WHOLE)["current"], counts(simulated.facts) | distinct(simulated.facts))
    in_both = {f.user for f in simulated.where("dev")} & {f.user for f in simulated.where("research")}
    assert in_both  # usernames repeat across the namespaces: alice works in both
    for user in in_both:
        assert worker.get(f"users/{user}", **WHOLE)["events"] == len(simulated.where(user=user))
    assert worker.get("overview", namespace="nowhere", **WHOLE)["current"]["events"] == 0
