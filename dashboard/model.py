"""Pure functions from the API's JSON to what the page shows: time ranges, KPI tiles, tables, health.

Nothing here touches Streamlit or the network, so all of it is unit-testable with recorded answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd

from dashboard.client import Span

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
STALE_S = 120.0  # no event processed for this long: "quiet" or "broken", not "live"
UTC_ZONE = ZoneInfo("UTC")

RANGES: dict[str, tuple[str, int | None]] = {
    "15m": ("Last 15 min", 15 * MINUTE_MS),
    "1h": ("Last hour", HOUR_MS),
    "24h": ("Last 24 h", DAY_MS),
    "7d": ("Last 7 days", 7 * DAY_MS),
    "30d": ("Last 30 days", 30 * DAY_MS),
    "term": ("Term", None),  # whole months, e.g. a semester
    "custom": ("Custom", None),
}
DEFAULT_RANGE = "1h"
MAX_SPAN_DAYS = 400  # the worker keeps day windows 400 days
TERM_MONTHS = 18  # how many months back a term may start

# The events jupyterlab-pioneer logs, in a fixed order, with fixed colors: one family per hue.
EVENT_COLORS: dict[str, str] = {
    "CellEditEvent": "#1f77b4",
    "CellExecuteEvent": "#08306b",
    "ActiveCellChangeEvent": "#6baed6",
    "CellAddEvent": "#9ecae1",
    "CellRemoveEvent": "#c6dbef",
    "NotebookScrollEvent": "#2ca02c",
    "NotebookVisibleEvent": "#74c476",
    "NotebookHiddenEvent": "#a1d99b",
    "NotebookOpenEvent": "#006d2c",
    "NotebookSaveEvent": "#31a354",
    "ClipboardCopyEvent": "#ff7f0e",
    "ClipboardCutEvent": "#fdae6b",
    "ClipboardPasteEvent": "#d94801",
}
EVENT_NAMES = list(EVENT_COLORS)
_SPARE_COLORS = ("#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
EXECUTIONS_COLOR, FAILURES_COLOR = "#1f77b4", "#d62728"
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def event_color(name: str) -> str:
    """The color of an event name, the same on every chart and page (unknown names: a stable spare)."""
    known = EVENT_COLORS.get(name)
    if known is not None:
        return known
    return _SPARE_COLORS[sum(name.encode()) % len(_SPARE_COLORS)]


def ordered_event_names(names: Iterable[str]) -> list[str]:
    """Known names in their fixed order, then unknown ones alphabetically."""
    present = set(names)
    return [n for n in EVENT_NAMES if n in present] + sorted(present - set(EVENT_NAMES))


# -- time --------------------------------------------------------------------------------------------


def zone(name: str | None) -> ZoneInfo:
    """The viewer's time zone (the browser's, from st.context), UTC when unknown."""
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_time(ms: float, tz: ZoneInfo) -> datetime:
    """Epoch milliseconds as a naive wall-clock time in `tz` (what charts and tables show)."""
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(tz).replace(tzinfo=None)


def maybe_local_time(ms: float | None, tz: ZoneInfo) -> datetime | None:
    return None if ms is None else local_time(ms, tz)


def to_ms(wall: datetime, tz: ZoneInfo) -> int:
    """A naive wall-clock time in `tz` (a custom range bound) as epoch milliseconds."""
    aware = wall.replace(tzinfo=tz) if wall.tzinfo is None else wall
    return int(aware.timestamp() * 1000)


@dataclass(frozen=True)
class Held:
    """What the worker still holds, by stream time (`held_from_ms` in its health): the oldest minute and
    hour windows (None: nothing held yet, no limit known), and the zone its day windows follow."""

    minute: int | None = None
    hour: int | None = None
    day_zone: ZoneInfo = UTC_ZONE

    @classmethod
    def from_health(cls, health: dict[str, Any]) -> Held:
        held = health.get("held_from_ms") or {}
        return cls(held.get("minute"), held.get("hour"), zone(health.get("day_time_zone")))


def resolution_for(from_ms: int, to_ms: int, held: Held) -> str:
    """Minutes for ranges of up to 6 h, hours for up to 14 days, where the worker still holds them;
    days otherwise.

    What the worker holds follows stream time, not the wall clock: a backfilled or quiet platform still
    has last week's minutes.
    """
    span = to_ms - from_ms
    if span <= 6 * HOUR_MS and (held.minute is None or from_ms >= held.minute):
        return "minute"
    if span <= 14 * DAY_MS and (held.hour is None or from_ms >= held.hour):
        return "hour"
    return "day"


def day_start(ms: int, tz: ZoneInfo) -> int:
    """Midnight in `tz` of the day holding `ms`, as epoch milliseconds: where a day window starts."""
    local = datetime.fromtimestamp(ms / 1000, UTC).astimezone(tz)
    return int(local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000)


def relative_span(key: str, now_ms: int, held: Held) -> Span:
    """The last 15 min/hour/24 h/7 days/30 days of the wall clock, aligned to whole windows: the current
    (partial) window is the last one, and the previous period of the same length is whole windows too."""
    length = RANGES[key][1]
    if length is None:
        raise ValueError(f"{key!r} is not a relative range")
    resolution = resolution_for(now_ms - length, now_ms, held)
    if resolution == "day":
        end = day_start(now_ms + DAY_MS + 2 * HOUR_MS, held.day_zone)  # the next midnight (23-25 h away)
        return Span(day_start(end - length + 12 * HOUR_MS, held.day_zone), end, resolution)
    size = MINUTE_MS if resolution == "minute" else HOUR_MS
    end = (now_ms // size + 1) * size
    return Span(end - length, end, resolution)


def custom_span(start: datetime, end: datetime, tz: ZoneInfo, held: Held) -> Span:
    from_ms, to_ms_ = to_ms(start, tz), to_ms(end, tz)
    if from_ms >= to_ms_:
        raise ValueError("the start of the range must be before its end")
    if to_ms_ - from_ms > MAX_SPAN_DAYS * DAY_MS:
        raise ValueError(f"the worker keeps {MAX_SPAN_DAYS} days of day windows: choose at most that")
    return Span(from_ms, to_ms_, resolution_for(from_ms, to_ms_, held))


def month_choices(now_ms: int, tz: ZoneInfo) -> list[str]:
    """The months a term may start or end in, newest first: `YYYY-MM`."""
    today = datetime.fromtimestamp(now_ms / 1000, UTC).astimezone(tz).date()
    months = []
    year, month = today.year, today.month
    for _ in range(TERM_MONTHS):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return months


def term_span(first: str, last: str, held: Held) -> Span:
    """Whole months `first` to `last` (`YYYY-MM`, both included) by the day, in the day windows' zone."""
    (first_year, first_month), (last_year, last_month) = (map(int, m.split("-")) for m in (first, last))
    if (first_year, first_month) > (last_year, last_month):
        raise ValueError("the term must start before it ends")
    after_year, after_month = (last_year, last_month + 1) if last_month < 12 else (last_year + 1, 1)
    tz = held.day_zone
    from_ms = to_ms(datetime(first_year, first_month, 1), tz)
    until_ms = to_ms(datetime(after_year, after_month, 1), tz)
    if until_ms - from_ms > MAX_SPAN_DAYS * DAY_MS:
        raise ValueError(f"the worker keeps {MAX_SPAN_DAYS} days of day windows: choose at most 13 months")
    return Span(from_ms, until_ms, "day")


def describe_span(span: Span, tz: ZoneInfo) -> str:
    start, end = local_time(span.from_ms, tz), local_time(span.to_ms, tz)
    if span.resolution == "day":  # whole days: the last one shown is the day before `end`
        last = local_time(span.to_ms - 1, tz)
        return f"{start:%Y-%m-%d} – {last:%Y-%m-%d} {tz.key}, per day"
    same_day = start.date() == end.date()
    end_text = end.strftime("%H:%M") if same_day else end.strftime("%Y-%m-%d %H:%M")
    return f"{start:%Y-%m-%d %H:%M} – {end_text} {tz.key}, per {span.resolution}"


def period_name(span: Span) -> str:
    minutes = round(span.minutes)
    if minutes < 120:
        return f"{minutes} min"
    if minutes < 2 * 24 * 60:
        return f"{minutes / 60:g} h"
    return f"{minutes / (24 * 60):g} days"


# -- numbers -----------------------------------------------------------------------------------------


def fmt_count(value: float | None) -> str:
    return "–" if value is None else f"{round(value):,}"


def fmt_rate(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f}"


def fmt_percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


def fmt_duration(seconds: float) -> str:
    seconds = max(seconds, 0)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        hours, minutes = divmod(round(seconds / 60), 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{seconds / 86400:.1f} days"


@dataclass(frozen=True)
class Kpi:
    label: str
    value: float | None
    previous: float | None
    text: str  # the value as shown
    delta: str | None  # the change against the previous period as shown
    previous_text: str | None  # None: not compared with the previous period
    lower_is_better: bool = False
    help: str = ""


def _kpi(
    label: str,
    current: float | None,
    previous: float | None,
    kind: str,
    help: str,
    *,
    lower_is_better: bool = False,
) -> Kpi:
    fmt = {"count": fmt_count, "rate": fmt_rate, "percent": fmt_percent}[kind]
    delta = None
    if current is not None and previous is not None:
        change = current - previous
        if kind == "count":
            delta = f"{round(change):+,}"
        elif kind == "rate":
            delta = f"{change:+,.1f}"
        else:
            delta = f"{change * 100:+.1f} pp"
    return Kpi(label, current, previous, fmt(current), delta, fmt(previous), lower_is_better, help)


def filtered_events(numbers: dict[str, Any], event_names: Sequence[str] | None) -> int:
    """Events of the chosen names (all events without a filter)."""
    if not event_names:
        return int(numbers.get("events", 0))
    by_name = numbers.get("events_by_name", {})
    return sum(int(by_name.get(name, 0)) for name in event_names)


def kpis(overview: dict[str, Any], span: Span, event_names: Sequence[str] | None = None) -> list[Kpi]:
    """The overview's tiles, each with its change against the previous period of the same length. Rates
    are per minute, and per day for ranges shown by the day (a term)."""
    current, previous = overview["current"], overview["previous"]
    minutes = span.minutes or 1.0
    unit, per_minute = ("day", 24 * 60) if span.resolution == "day" else ("min", 1)

    def events_rate(numbers: dict[str, Any]) -> float:
        if not event_names:
            return float(numbers["events_per_min"]) * per_minute
        return filtered_events(numbers, event_names) / minutes * per_minute

    def executions_rate(numbers: dict[str, Any]) -> float:
        return float(numbers["executions_per_min"]) * per_minute

    events_help = f"Pioneer events per {'minute' if unit == 'min' else unit} over the range"
    if event_names:
        events_help += f" ({', '.join(event_names)} only)"
    return [
        _kpi("Active users", current["active_users"], previous["active_users"], "count",
             "Distinct users with at least one event in the range"),
        _kpi("Sessions", current["active_sessions"], previous["active_sessions"], "count",
             "Distinct JupyterLab sessions with events in the range"),
        _kpi("Notebooks", current["active_notebooks"], previous["active_notebooks"], "count",
             "Distinct notebooks (user and path) with events in the range"),
        _kpi(f"Events/{unit}", events_rate(current), events_rate(previous), "rate", events_help),
        _kpi(f"Executions/{unit}", executions_rate(current), executions_rate(previous), "rate",
             f"Cell executions per {'minute' if unit == 'min' else unit}"),
        _kpi("Failure rate", current["failure_rate"], previous["failure_rate"], "percent",
             "Share of cell executions that raised an error", lower_is_better=True),
    ]  # fmt: skip


def failure_rate(numbers: dict[str, Any]) -> float | None:
    return numbers["failures"] / numbers["executions"] if numbers["executions"] else None


def _activity_kpis(
    current: dict[str, Any], previous: dict[str, Any], event_names: Sequence[str] | None
) -> tuple[Kpi, Kpi, Kpi, Kpi]:
    """Events, executions, failures and the failure rate of a user or a notebook, against the previous
    period."""
    events_help = "Pioneer events in the range"
    if event_names:
        events_help += f" ({', '.join(event_names)} only)"
    return (
        _kpi("Events", filtered_events(current, event_names), filtered_events(previous, event_names), "count",
             events_help),
        _kpi("Executions", current["executions"], previous["executions"], "count", "Cell executions"),
        _kpi("Failures", current["failures"], previous["failures"], "count",
             "Cell executions that raised an error", lower_is_better=True),
        _kpi("Failure rate", failure_rate(current), failure_rate(previous), "percent",
             "Share of cell executions that raised an error", lower_is_better=True),
    )  # fmt: skip


def user_kpis(
    detail: dict[str, Any], span: Span, tz: ZoneInfo, event_names: Sequence[str] | None = None
) -> list[Kpi]:
    """A user page's tiles (the API's `users/{user}`), each but the last seen against the previous period."""
    unit = f"{span.resolution}s"
    previous = detail["previous"]
    last_seen = maybe_local_time(detail["last_seen_ms"], tz)
    events, executions, _, rate = _activity_kpis(detail, previous, event_names)  # failures: in the charts
    return [
        events,
        executions,
        rate,
        _kpi(f"Active {unit}", detail[f"active_{unit}"], previous[f"active_{unit}"], "count",
             f"{unit.capitalize()} with at least one event"),
        _kpi("Sessions", detail["active_sessions"], previous["active_sessions"], "count",
             "Distinct JupyterLab sessions with events in the range"),
        Kpi("Last seen", None, None, f"{last_seen:%H:%M}" if last_seen else "–", None, None,
            help=f"The user's last event ({tz.key}): {last_seen}"),
    ]  # fmt: skip


def notebook_kpis(detail: dict[str, Any], event_names: Sequence[str] | None = None) -> list[Kpi]:
    """A notebook page's tiles (the API's `notebooks?path=`), against the previous period."""
    previous = detail["previous"]
    return [
        _kpi("Users", detail["active_users"], previous["active_users"], "count",
             "Users with a notebook at this path"),
        _kpi("Sessions", detail["active_sessions"], previous["active_sessions"], "count",
             "Distinct JupyterLab sessions on notebooks at this path"),
        *_activity_kpis(detail, previous, event_names),
    ]  # fmt: skip


def drilldown_sparklines(
    kpis: Sequence[Kpi], timeline: list[dict[str, Any]], event_names: Sequence[str] | None = None
) -> list[list[float] | None]:
    """Each drill-down tile's numbers per window, from the page's timeline (None: the tile has none)."""
    series = {
        "Events": [float(filtered_events(p, event_names)) for p in timeline],
        "Executions": [float(p["executions"]) for p in timeline],
        "Failures": [float(p["failures"]) for p in timeline],
        "Failure rate": [failure_rate(p) or 0.0 for p in timeline],
        "Sessions": [float(p["active_sessions"]) for p in timeline],
    }
    return [series.get(kpi.label) for kpi in kpis]


# -- frames ------------------------------------------------------------------------------------------


def points_frame(points: list[dict[str, Any]], tz: ZoneInfo) -> pd.DataFrame:
    """One row per window: time (wall clock in tz) and the window's numbers."""
    columns = ["events", "active_users", "active_sessions", "active_notebooks", "executions", "failures"]
    rows = [
        {"time": local_time(p["start_ms"], tz), **{c: p.get(c) for c in columns if c in p}} for p in points
    ]
    frame = pd.DataFrame(rows, columns=["time", *[c for c in columns if any(c in p for p in points)]])
    frame["time"] = pd.to_datetime(frame["time"])
    return frame


def events_by_name_frame(
    points: list[dict[str, Any]], tz: ZoneInfo, event_names: Sequence[str] | None = None
) -> pd.DataFrame:
    """Long form for a stacked chart: time, event, events; zeros where a name had none."""
    names = ordered_event_names(n for p in points for n in p.get("events_by_name", {}))
    if event_names:
        names = [n for n in names if n in event_names]
    rows = [
        {"time": local_time(p["start_ms"], tz), "event": name, "events": p["events_by_name"].get(name, 0)}
        for p in points
        for name in names
    ]
    frame = pd.DataFrame(rows, columns=["time", "event", "events"])
    frame["time"] = pd.to_datetime(frame["time"])
    return frame


def executions_frame(points: list[dict[str, Any]], tz: ZoneInfo) -> pd.DataFrame:
    """Long form: time, series (executions | failures), count."""
    rows = [
        {"time": local_time(p["start_ms"], tz), "series": series, "count": p.get(series, 0)}
        for p in points
        for series in ("executions", "failures")
    ]
    frame = pd.DataFrame(rows, columns=["time", "series", "count"])
    frame["time"] = pd.to_datetime(frame["time"])
    return frame


def heatmap_frame(
    points: list[dict[str, Any]], tz: ZoneInfo, event_names: Sequence[str] | None = None
) -> pd.DataFrame:
    """Events by weekday and hour of day (in tz), every cell present."""
    totals = {(day, hour): 0 for day in WEEKDAYS for hour in range(24)}
    for point in points:
        when = local_time(point["start_ms"], tz)
        totals[(WEEKDAYS[when.weekday()], when.hour)] += filtered_events(point, event_names)
    return pd.DataFrame(
        [{"weekday": day, "hour": hour, "events": n} for (day, hour), n in totals.items()],
        columns=["weekday", "hour", "events"],
    )


def top_frame(rows: list[dict[str, Any]], dimension: str, tz: ZoneInfo) -> pd.DataFrame:
    """A top table with the API's field names as columns (the CSV download keeps them)."""
    columns = {
        "users": ["user", "events", "executions", "failures", "last_seen"],
        "notebooks": ["user", "notebook", "events", "executions", "failures"],
        "errors": ["error", "failures"],
    }[dimension]
    records = []
    for row in rows:
        record = {c: row.get(c) for c in columns}
        if "last_seen" in columns:
            record["last_seen"] = maybe_local_time(row.get("last_seen_ms"), tz)
        records.append(record)
    frame = pd.DataFrame(records, columns=columns)
    if "last_seen" in columns:
        frame["last_seen"] = pd.to_datetime(frame["last_seen"])
    return frame


def errors_frame(failures_by_error: dict[str, int]) -> pd.DataFrame:
    rows = sorted(failures_by_error.items(), key=lambda item: (-item[1], item[0]))
    return pd.DataFrame(rows, columns=["error", "failures"])


def user_failures_by_error(detail: dict[str, Any]) -> dict[str, int]:
    errors: dict[str, int] = {}
    for notebook in detail.get("notebooks", []):
        for name, count in notebook["failures_by_error"].items():
            errors[name] = errors.get(name, 0) + count
    return errors


def user_notebooks_frame(detail: dict[str, Any], event_names: Sequence[str] | None = None) -> pd.DataFrame:
    rows = [
        {
            "notebook": nb["notebook"],
            "events": filtered_events(nb, event_names),
            "executions": nb["executions"],
            "failures": nb["failures"],
            "errors": ", ".join(f"{name} ×{n}" for name, n in sorted(nb["failures_by_error"].items())),
        }
        for nb in detail.get("notebooks", [])
    ]
    rows.sort(key=lambda row: (-row["events"], row["notebook"]))
    return pd.DataFrame(rows, columns=["notebook", "events", "executions", "failures", "errors"])


def notebook_users_frame(detail: dict[str, Any], event_names: Sequence[str] | None = None) -> pd.DataFrame:
    rows = [
        {"user": u["user"], "events": filtered_events(u, event_names), "executions": u["executions"],
         "failures": u["failures"]}
        for u in detail.get("users", [])
    ]  # fmt: skip
    rows.sort(key=lambda row: (-row["events"], row["user"]))
    return pd.DataFrame(rows, columns=["user", "events", "executions", "failures"])


def sessions_frame(detail: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame({"session": list(detail.get("sessions", []))}, columns=["session"])


def has_data(overview: dict[str, Any]) -> bool:
    return bool(overview["current"]["events"] or overview["previous"]["events"])


# -- pipeline health ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HealthStatus:
    level: str  # live | behind | quiet | broken | empty
    title: str
    detail: str
    lag: int
    waiting_partitions: list[str]  # assigned, holding lines, never processed one
    last_event_age_s: float | None
    notes: list[str]


def assess_health(health: dict[str, Any], now_s: float, stale_s: float = STALE_S) -> HealthStatus:
    """Tell a quiet platform from a broken pipeline.

    Quiet: nothing new for a while, and nothing waits in Kafka (everything received was processed).
    Broken: lines wait in Kafka (lag) but nothing was processed for a while.
    """
    partitions = health.get("partitions", {})
    lag = int(health.get("lag") or 0)
    waiting = sorted(
        (
            p
            for p, info in partitions.items()
            if info.get("processed") is None and (info.get("highwater") or 0) > 0
        ),
        key=lambda p: int(p) if str(p).isdigit() else 0,
    )
    last = health.get("last_event_at")
    age = None if last is None else max(now_s - float(last), 0.0)
    day = health.get("last_24h", {})
    notes = []
    if day.get("dead_letters"):
        notes.append(
            f"{day['dead_letters']:,} lines in the last 24 h looked like events but could not be parsed "
            "(see the dead-letter topic)."
        )
    if day.get("late"):
        notes.append(
            f"{day['late']:,} events in the last 24 h arrived too late for their minute window: they count in "
            "their hour and day windows only."
        )
    if day.get("backfilled"):
        notes.append(
            f"{day['backfilled']:,} events older than the minute windows arrived (a backfill): they count in "
            "their hour and day windows."
        )
    if day.get("expired"):
        notes.append(f"{day['expired']:,} events older than the day windows' retention are not counted.")
    if day.get("duplicates"):
        notes.append(f"{day['duplicates']:,} lines were delivered twice by the collector and counted once.")
    for worker, crash in (health.get("crashes") or {}).items():
        notes.append(f"The worker at {worker} crashed and was restarted: {crash}")
    pending = f"{lag:,} lines wait in Kafka" if lag else ""
    if waiting:
        pending = (pending + "; " if pending else "") + (
            f"partition{'s' if len(waiting) > 1 else ''} {', '.join(waiting)} hold lines but none was processed yet"
        )

    def status(level: str, title: str, detail: str) -> HealthStatus:
        return HealthStatus(level, title, detail, lag, waiting, age, notes)

    if age is None:
        if pending:
            return status("broken", "Nothing processed yet", f"{pending}. Is the worker starting, or stuck?")
        if day.get("events"):  # a restarted worker on a quiet platform: its windows hold the last 24 h
            return status(
                "quiet",
                "Quiet platform",
                f"No event processed since the worker started; {day['events']:,} events in the last 24 h, "
                "and nothing waits in Kafka.",
            )
        return status(
            "empty",
            "No events received yet",
            "No worker has processed an event since it started: telemetry is not enabled, or no collector "
            "sends pod logs to Kafka.",
        )
    if age <= stale_s:
        if lag > 1000 or waiting:
            return status(
                "behind", "Live, catching up", f"Last event processed {fmt_duration(age)} ago; {pending}."
            )
        return status(
            "live", "Live", f"Last event processed {fmt_duration(age)} ago; nothing waits in Kafka."
        )
    if pending:
        return status(
            "broken",
            "Pipeline stalled",
            f"{pending}, but nothing was processed for {fmt_duration(age)}: check the worker.",
        )
    return status(
        "quiet",
        "Quiet platform",
        f"Nothing new for {fmt_duration(age)}, and everything received was processed. If people are working "
        "in JupyterLab right now, check the collector: no new lines reach Kafka.",
    )


def partitions_frame(health: dict[str, Any], tz: ZoneInfo, now_s: float) -> pd.DataFrame:
    rows = []
    for partition, info in sorted(health.get("partitions", {}).items(), key=lambda kv: int(kv[0])):
        last = info.get("last_event_at")
        rows.append(
            {
                "partition": int(partition),
                "highwater": info.get("highwater"),
                "processed": info.get("processed"),
                "lag": info.get("lag"),
                "stream_time": maybe_local_time(info.get("stream_time_ms"), tz),
                "last_event": None if last is None else f"{fmt_duration(now_s - float(last))} ago",
            }
        )
    columns = ["partition", "highwater", "processed", "lag", "stream_time", "last_event"]
    return pd.DataFrame(rows, columns=columns)
