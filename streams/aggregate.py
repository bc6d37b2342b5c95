"""Event-time window aggregates: what one window holds, how events add up, and how partials merge.

A window value is a plain JSON-able dict, one per (source partition, window start). Every source
partition keeps its own partial; the read API merges partials from all workers (sums, unions), so any
worker answers for the whole platform. Distinct counts are exact (the keys of `users`, `sessions`,
`notebooks`): a minute of a busy platform holds a few hundred of them, cheap to keep and to merge.

Events are counted per Kubernetes namespace (`namespaces`: namespace -> that namespace's numbers), so
the read API answers for one namespace, or for all by merging them. An event updates one namespace's
numbers only, so the breakdown costs `add_event` a lookup, not a second set of counters. What the
worker counts about the pipeline stays at the top: `late`, `backfilled`, `expired`, `duplicates`,
`dead_letters`, `skew`.

Windows come in three sizes: minutes, hours, and days. A day is a calendar day in the worker's
`day_time_zone` (UTC by default), so its start is that zone's midnight as epoch milliseconds and its
length is 23 to 25 hours around a daylight-saving change (`DayCalendar`).

Each value records `o`, the highest raw-topic offset applied to it. Events arrive per partition in
offset order, so after a crash the replayed events at or below `o` are skipped: a restarted worker
neither loses nor double-counts (see docs/streams.md).

Windows stored before namespaces were counted hold their events' numbers at the top level, and their
`users` and `notebooks` lists lack the by-name counts and the notebooks' sessions: `merge_into` reads
them as the unknown namespace, so every reader sees one shape.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from streams.schema import PioneerEvent

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
COUNTERS = ("late", "backfilled", "expired", "duplicates", "dead_letters")  # the pipeline's, per window
NOTEBOOK_KEY_SEPARATOR = "\x1f"  # between user and path: neither contains it
UNKNOWN_NAMESPACE = ""  # events without one (log files read outside a cluster), and old windows
EXECUTE = "CellExecuteEvent"
EDIT = "CellEditEvent"

Window = dict[str, Any]
Part = dict[str, Any]  # one namespace's numbers in a window


def window_start(time_ms: int, size_ms: int) -> int:
    return time_ms - time_ms % size_ms


class DayCalendar:
    """Calendar days in one time zone: where a day starts, and which days a range touches."""

    def __init__(self, zone: str = "UTC") -> None:
        self.zone = ZoneInfo(zone)
        self.start = lru_cache(maxsize=4096)(self._start)  # every zone's offset is a multiple of 15 minutes

    def _start(self, time_ms: int) -> int:
        """The start of the day holding `time_ms`: midnight in the zone, as epoch milliseconds."""
        local = datetime.fromtimestamp(time_ms / 1000, UTC).astimezone(self.zone)
        return int(local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000)

    def starts(self, from_ms: int, to_ms: int) -> list[int]:
        """Starts of the days overlapping [from_ms, to_ms)."""
        starts = []
        day = datetime.fromtimestamp(self.start(from_ms) / 1000, UTC).astimezone(self.zone).date()
        while True:
            start = int(datetime.combine(day, datetime.min.time(), self.zone).timestamp() * 1000)
            if start >= to_ms:
                return starts
            starts.append(start)
            day += timedelta(days=1)


def event_time(event: PioneerEvent) -> int:
    """Event time is the server's log time; the browser's clock only when the line has none."""
    log_time = event["log_time_ms"]
    return log_time if log_time is not None else event["event_time_ms"]


def notebook_key(user: str | None, path: str | None) -> str:
    return f"{user or ''}{NOTEBOOK_KEY_SEPARATOR}{path or ''}"


def split_notebook_key(key: str) -> tuple[str, str]:
    user, _, path = key.partition(NOTEBOOK_KEY_SEPARATOR)
    return user, path


PART_FIELDS = ("events", "users", "sessions", "notebooks", "errors")


def empty_part() -> Part:
    """Executions, failures and edits are not kept apart: they are `events[EXECUTE]`, the sum of
    `errors` and `events[EDIT]`."""
    return {
        "events": {},  # event name -> count
        "users": {},  # user -> [events, executions, failures, last seen ms, {event name: count}]
        "sessions": {},  # session id -> user
        "notebooks": {},  # user \x1f path -> [events, executions, failures, {error: failures},
        #                                     {event name: count}, {session id: 1}]
        "errors": {},  # error name -> failed executions
    }


def empty_window() -> Window:
    return {
        "o": -1,  # highest raw offset applied
        "namespaces": {},  # namespace -> Part
        "skew": [0, 0, 0],  # sum, count, max |log time - browser time| in ms
        "late": 0,  # behind its source's newest event by more than the grace: in hours and days only
        "backfilled": 0,  # older than the minute windows' retention: in hours (if held) and days only
        "expired": 0,  # older than the day windows' retention: in no window
        "duplicates": 0,
        "dead_letters": 0,
    }


def add_event(window: Window, event: PioneerEvent) -> None:
    """Count one event into its namespace's part of a window (mutates it). The worker's hot path."""
    parts = window.get("namespaces")
    if parts is None:  # a window stored before namespaces were counted
        parts = window["namespaces"] = {}
    namespace = event["namespace"] or UNKNOWN_NAMESPACE
    part = parts.get(namespace)
    if part is None:
        part = parts[namespace] = empty_part()
    name = event["event_name"]
    events = part["events"]
    events[name] = events.get(name, 0) + 1
    executed = name == EXECUTE
    failed = executed and event["success"] is False
    user = event["user"] or ""
    stats = part["users"].get(user)
    if stats is None:
        stats = part["users"][user] = [0, 0, 0, 0, {}]
    stats[0] += 1
    stats[1] += executed
    stats[2] += failed
    stats[3] = max(stats[3], event_time(event))
    stats[4][name] = stats[4].get(name, 0) + 1
    session = event["session_id"]
    if session:
        part["sessions"][session] = user
    notebook = None
    if event["notebook_path"]:
        key = notebook_key(user, event["notebook_path"])
        notebook = part["notebooks"].get(key)
        if notebook is None:
            notebook = part["notebooks"][key] = [0, 0, 0, {}, {}, {}]
        notebook[0] += 1
        notebook[1] += executed
        notebook[2] += failed
        notebook[4][name] = notebook[4].get(name, 0) + 1
        if session:
            notebook[5][session] = 1
    if failed:
        error = event["error_name"] or "unknown"
        part["errors"][error] = part["errors"].get(error, 0) + 1
        if notebook is not None:
            notebook[3][error] = notebook[3].get(error, 0) + 1
    if event["log_time_ms"] is not None:
        skew = abs(event["log_time_ms"] - event["event_time_ms"])
        window["skew"][0] += skew
        window["skew"][1] += 1
        window["skew"][2] = max(window["skew"][2], skew)


def add_counts(total: dict[str, int], part: dict[str, int]) -> None:
    for name, count in part.items():
        total[name] = total.get(name, 0) + count


def merge_part(total: Part, part: Part) -> Part:
    """Add one namespace's numbers (another partition's, another window's) into `total`."""
    add_counts(total["events"], part["events"])
    for user, stats in part["users"].items():
        mine = total["users"].setdefault(user, [0, 0, 0, 0, {}])
        mine[0] += stats[0]
        mine[1] += stats[1]
        mine[2] += stats[2]
        mine[3] = max(mine[3], stats[3])
        add_counts(mine[4], stats[4] if len(stats) > 4 else {})  # old windows: no names
    total["sessions"].update(part["sessions"])
    for key, stats in part["notebooks"].items():
        mine = total["notebooks"].setdefault(key, [0, 0, 0, {}, {}, {}])
        mine[0] += stats[0]
        mine[1] += stats[1]
        mine[2] += stats[2]
        add_counts(mine[3], stats[3])
        if len(stats) > 4:  # old windows: neither names nor sessions
            add_counts(mine[4], stats[4])
            mine[5].update(stats[5])
    add_counts(total["errors"], part["errors"])
    return total


def merge_into(total: Window, window: Window) -> Window:
    """Add a partial window (another partition's, or another window's) into `total`."""
    parts = total["namespaces"]
    if "events" in window:  # stored before namespaces were counted: its numbers are at the top
        merge_part(parts.setdefault(UNKNOWN_NAMESPACE, empty_part()), window)
    for namespace, part in window.get("namespaces", {}).items():
        merge_part(parts.setdefault(namespace, empty_part()), part)
    for field in COUNTERS:
        total[field] += window.get(field, 0)  # windows stored before a counter existed lack it
    total["skew"][0] += window["skew"][0]
    total["skew"][1] += window["skew"][1]
    total["skew"][2] = max(total["skew"][2], window["skew"][2])
    return total


def entity_share(window: Window, user: str | None = None, notebook: str | None = None) -> Window:
    """The part of a window that a user's or a notebook's page reads: the notebooks of that user and/or
    path, and the user's row and sessions, in each namespace that has them (the namespaces' event and
    error totals left empty). Such a query merges only this, however many users the window holds.
    Read only: `window` is not changed."""
    parts = window.get("namespaces", {})
    if "events" in window:  # stored before namespaces were counted: its numbers are at the top
        parts = {**parts, UNKNOWN_NAMESPACE: window}
    owner_prefix = None if user is None else user + NOTEBOOK_KEY_SEPARATOR
    path_suffix = None if notebook is None else NOTEBOOK_KEY_SEPARATOR + notebook
    shares = {}
    for namespace, part in parts.items():
        row = None if user is None else part["users"].get(user)
        if user is not None and row is None:
            continue
        notebooks = {
            key: stats
            for key, stats in part["notebooks"].items()
            if (owner_prefix is None or key.startswith(owner_prefix))
            and (path_suffix is None or key.endswith(path_suffix))
        }
        if row is None and not notebooks:
            continue
        shares[namespace] = {
            "events": {},
            "users": {} if row is None else {user: row},
            "sessions": {} if row is None else {s: o for s, o in part["sessions"].items() if o == user},
            "notebooks": notebooks,
            "errors": {},
        }
    share = {field: value for field, value in window.items() if field not in PART_FIELDS}
    share["namespaces"] = shares
    return share


def select(window: Window, namespace: str | None = None) -> Part:
    """One namespace's numbers in a merged window, or all namespaces' merged (None). Read only."""
    parts = window["namespaces"]
    if namespace is not None:
        return parts.get(namespace) or empty_part()
    if len(parts) == 1:
        return next(iter(parts.values()))
    total = empty_part()
    for part in parts.values():
        merge_part(total, part)
    return total


def summary(window: Window, namespace: str | None = None) -> dict[str, Any]:
    """The numbers a dashboard shows for one window (or a merged range), for one namespace or all.
    The pipeline's counters (`COUNTERS`, clock skew) are for all namespaces."""
    part = select(window, namespace)
    skew_sum, skew_count, skew_max = window["skew"]
    return {
        "events": sum(part["events"].values()),
        "events_by_name": dict(sorted(part["events"].items())),
        "active_users": len(part["users"]),
        "active_sessions": len(part["sessions"]),
        "active_notebooks": len(part["notebooks"]),
        "executions": part["events"].get(EXECUTE, 0),
        "failures": sum(part["errors"].values()),
        "failures_by_error": dict(sorted(part["errors"].items())),
        "edits": part["events"].get(EDIT, 0),
        **{field: window[field] for field in COUNTERS},
        "clock_skew_ms": {"mean": skew_sum / skew_count if skew_count else None, "max": skew_max},
    }
