"""Event-time window aggregates: what one window holds, how events add up, and how partials merge.

A window value is a plain JSON-able dict, one per (source partition, window start). Every source
partition keeps its own partial; the read API merges partials from all workers (sums, unions), so any
worker answers for the whole platform. Distinct counts are exact (the keys of `users`, `sessions`,
`notebooks`): a minute of a busy platform holds a few hundred of them, cheap to keep and to merge.

Each value records `o`, the highest raw-topic offset applied to it. Events arrive per partition in
offset order, so after a crash the replayed events at or below `o` are skipped: a restarted worker
neither loses nor double-counts (see docs/streams.md).
"""

from __future__ import annotations

from typing import Any

from streams.schema import PioneerEvent

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
NOTEBOOK_KEY_SEPARATOR = "\x1f"  # between user and path: neither contains it

Window = dict[str, Any]


def window_start(time_ms: int, size_ms: int) -> int:
    return time_ms - time_ms % size_ms


def event_time(event: PioneerEvent) -> int:
    """Event time is the server's log time; the browser's clock only when the line has none."""
    return event.log_time_ms if event.log_time_ms is not None else event.event_time_ms


def notebook_key(user: str | None, path: str | None) -> str:
    return f"{user or ''}{NOTEBOOK_KEY_SEPARATOR}{path or ''}"


def split_notebook_key(key: str) -> tuple[str, str]:
    user, _, path = key.partition(NOTEBOOK_KEY_SEPARATOR)
    return user, path


def empty_window() -> Window:
    return {
        "o": -1,  # highest raw offset applied
        "events": {},  # event name -> count
        "users": {},  # user -> [events, executions, failures, last seen ms]
        "sessions": {},  # session id -> user
        "notebooks": {},  # user \x1f path -> [events, executions, failures, {error name: failures}]
        "errors": {},  # error name -> failed executions
        "executions": 0,
        "failures": 0,
        "edits": 0,
        "skew": [0, 0, 0],  # sum, count, max |log time - browser time| in ms
        "late": 0,
        "duplicates": 0,
        "dead_letters": 0,
    }


def add_event(window: Window, event: PioneerEvent) -> None:
    """Count one event into a window (mutates it)."""
    name = event.event_name
    window["events"][name] = window["events"].get(name, 0) + 1
    executed = name == "CellExecuteEvent"
    failed = executed and event.success is False
    user = event.user or ""
    stats = window["users"].setdefault(user, [0, 0, 0, 0])
    stats[0] += 1
    stats[1] += executed
    stats[2] += failed
    stats[3] = max(stats[3], event_time(event))
    if event.session_id:
        window["sessions"][event.session_id] = user
    if event.notebook_path:
        notebook = window["notebooks"].setdefault(notebook_key(user, event.notebook_path), [0, 0, 0, {}])
        notebook[0] += 1
        notebook[1] += executed
        notebook[2] += failed
        if failed:
            error = event.error_name or "unknown"
            notebook[3][error] = notebook[3].get(error, 0) + 1
    if executed:
        window["executions"] += 1
        if failed:
            window["failures"] += 1
            error = event.error_name or "unknown"
            window["errors"][error] = window["errors"].get(error, 0) + 1
    elif name == "CellEditEvent":
        window["edits"] += 1
    if event.log_time_ms is not None:
        skew = abs(event.log_time_ms - event.event_time_ms)
        window["skew"][0] += skew
        window["skew"][1] += 1
        window["skew"][2] = max(window["skew"][2], skew)


def merge_into(total: Window, part: Window) -> Window:
    """Add a partial window (another partition's, or another window's) into `total`."""
    for name, count in part["events"].items():
        total["events"][name] = total["events"].get(name, 0) + count
    for user, stats in part["users"].items():
        mine = total["users"].setdefault(user, [0, 0, 0, 0])
        mine[0] += stats[0]
        mine[1] += stats[1]
        mine[2] += stats[2]
        mine[3] = max(mine[3], stats[3])
    total["sessions"].update(part["sessions"])
    for key, stats in part["notebooks"].items():
        mine = total["notebooks"].setdefault(key, [0, 0, 0, {}])
        mine[0] += stats[0]
        mine[1] += stats[1]
        mine[2] += stats[2]
        for error, count in stats[3].items():
            mine[3][error] = mine[3].get(error, 0) + count
    for name, count in part["errors"].items():
        total["errors"][name] = total["errors"].get(name, 0) + count
    for field in ("executions", "failures", "edits", "late", "duplicates", "dead_letters"):
        total[field] += part[field]
    total["skew"][0] += part["skew"][0]
    total["skew"][1] += part["skew"][1]
    total["skew"][2] = max(total["skew"][2], part["skew"][2])
    return total


def summary(window: Window) -> dict[str, Any]:
    """The numbers a dashboard shows for one window (or a merged range)."""
    skew_sum, skew_count, skew_max = window["skew"]
    return {
        "events": sum(window["events"].values()),
        "events_by_name": dict(sorted(window["events"].items())),
        "active_users": len(window["users"]),
        "active_sessions": len(window["sessions"]),
        "active_notebooks": len(window["notebooks"]),
        "executions": window["executions"],
        "failures": window["failures"],
        "failures_by_error": dict(sorted(window["errors"].items())),
        "edits": window["edits"],
        "late": window["late"],
        "duplicates": window["duplicates"],
        "dead_letters": window["dead_letters"],
        "clock_skew_ms": {"mean": skew_sum / skew_count if skew_count else None, "max": skew_max},
    }
