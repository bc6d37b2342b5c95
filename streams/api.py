"""The worker's read API (JSON over HTTP, Faust web views); documented in docs/api.md.

Every endpoint but `live` asks for the bearer token `WorkerSettings.api_token` (compared in constant
time), the fan-out between workers included; without a token the worker listens on loopback only.

Every window is stored as per-partition partials on the worker that owns the partition. A public
endpoint asks every worker of the cluster (Faust's partition assignment says which, and where) for its
local partials over the requested range, merges them and answers, so any worker answers every query.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import aiohttp
import faust
import orjson
from faust.web import Request, Response, View

from streams.aggregate import (
    COUNTERS,
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    DayCalendar,
    Part,
    Window,
    add_counts,
    empty_window,
    merge_into,
    select,
    split_notebook_key,
    summary,
    window_start,
)

if TYPE_CHECKING:
    from streams.local_state import LocalState

log = logging.getLogger(__name__)

API = "/api/v1"
MAX_WINDOWS = 24 * 60 * 8  # a request may span at most this many windows (8 days of minutes)
MINUTE_RANGE_MS = 24 * HOUR_MS  # without `resolution`, longer ranges are answered by the hour,
HOUR_RANGE_MS = 31 * DAY_MS  # and ranges longer than a month by the day
RESOLUTIONS = ("minute", "hour", "day")
MAX_WAIT_S = 30.0  # the longest a `changes` request is held open


class BadRequest(ValueError):
    pass


def _int(request: Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer (epoch milliseconds or a count), not {raw!r}") from None


class TimeRange:
    """[from_ms, to_ms) of event time at minute, hour or day resolution (days of `calendar`)."""

    def __init__(
        self, from_ms: int, to_ms: int, resolution: str, calendar: DayCalendar | None = None
    ) -> None:
        if from_ms >= to_ms:
            raise BadRequest("from_ms must be before to_ms")
        if resolution not in RESOLUTIONS:
            raise BadRequest("resolution is 'minute', 'hour' or 'day'")
        self.from_ms, self.to_ms = from_ms, to_ms
        self.resolution = resolution
        self.calendar = calendar or DayCalendar()
        self.size_ms = {"minute": MINUTE_MS, "hour": HOUR_MS, "day": DAY_MS}[resolution]  # days: about
        if self.span_ms // self.size_ms > MAX_WINDOWS:
            raise BadRequest(f"range too long for {resolution} resolution")

    @property
    def span_ms(self) -> int:
        return self.to_ms - self.from_ms

    def previous(self) -> TimeRange:
        """The range of the same length just before, for "change against the previous period"."""
        return TimeRange(self.from_ms - self.span_ms, self.from_ms, self.resolution, self.calendar)

    def starts(self) -> Sequence[int]:
        """Window starts overlapping [from_ms, to_ms)."""
        if self.resolution == "day":
            return self.calendar.starts(self.from_ms, self.to_ms)
        return range(window_start(self.from_ms, self.size_ms), self.to_ms, self.size_ms)

    def query(self) -> dict[str, str]:
        return {"from_ms": str(self.from_ms), "to_ms": str(self.to_ms), "resolution": self.resolution}


def finest_resolution(from_ms: int, to_ms: int, held_from: dict[str, int | None]) -> str:
    """The finest windows the worker still holds for the range (by stream time, whatever the wall clock
    says): minutes for up to 24 h, hours for up to a month, days otherwise."""

    def held(size: str) -> bool:
        oldest = held_from.get(size)
        return oldest is None or from_ms >= oldest

    span = to_ms - from_ms
    if span <= MINUTE_RANGE_MS and held("minute"):
        return "minute"
    if span <= HOUR_RANGE_MS and held("hour"):
        return "hour"
    return "day"


def _namespace(request: Request) -> str | None:
    """The `namespace` filter; absent or empty: every namespace."""
    return request.query.get("namespace") or None


class ReadApi:
    """Local partial reads, cluster-wide fan-out and the public views' computations."""

    def __init__(self, app: faust.App, pipeline: LocalState, token: str | None) -> None:
        self.app = app
        self.pipeline = pipeline
        self.token = token
        self._authorization = f"Bearer {token}".encode() if token else None

    def authorized(self, request: Request) -> bool:
        if self._authorization is None:
            return True
        given = request.headers.get("Authorization", "").encode()
        return hmac.compare_digest(given, self._authorization)

    async def span(self, request: Request) -> TimeRange:
        """The request's `from_ms`/`to_ms` (by default the last hour of the wall clock) and `resolution`
        (by default the finest the cluster holds for the range)."""
        to_ms = _int(request, "to_ms", int(time.time() * 1000))
        from_ms = _int(request, "from_ms", to_ms - HOUR_MS)
        resolution = request.query.get("resolution")
        if not resolution:
            if from_ms >= to_ms:
                raise BadRequest("from_ms must be before to_ms")
            resolution = finest_resolution(from_ms, to_ms, cluster_held_from(await self.cluster_health()))
        return TimeRange(from_ms, to_ms, resolution, self.pipeline.calendar)

    # -- this worker's partials ---------------------------------------------------------------------

    def local_partitions(self) -> list[int]:
        return self.pipeline.local_partitions()

    def local_windows(
        self, resolution: str, starts: Sequence[int], user: str | None = None, notebook: str | None = None
    ) -> dict[int, Window]:
        return self.pipeline.local_windows(resolution, starts, user, notebook)

    async def local_health(self) -> dict[str, Any]:
        consumer = self.app.consumer
        partitions = {}
        for partition in self.local_partitions():
            state = self.pipeline.partitions.get(partition)
            stream_time = state.stream_time if state else self.pipeline.stored_stream_time(partition)
            tp = next(
                tp
                for tp in self.app.assignor.assigned_actives()
                if tp.partition == partition and tp.topic == self.pipeline.raw_topic_name
            )
            highwater = consumer.highwater(tp) if consumer is not None else None
            if state is not None:
                processed: int | None = state.last_offset + 1
            else:  # nothing processed since this worker started: where it will resume from
                processed = await consumer.position(tp) if consumer is not None else None
            partitions[partition] = {
                "highwater": highwater,
                "processed": processed,
                "lag": None if highwater is None or processed is None else max(highwater - processed, 0),
                "stream_time_ms": stream_time or None,
                "held_from_ms": self.pipeline.held_from(stream_time) if stream_time else None,
                "last_event_at": state.last_event_at if state else None,
            }
        return {
            "worker": self.url,
            "partitions": partitions,
            "last_crash": self.pipeline.last_crash,
        }

    # -- the cluster --------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return str(self.app.conf.canonical_url).rstrip("/")

    def workers(self) -> list[str]:
        urls = {str(url).rstrip("/") for url in self.app.router.tables_metadata()}
        urls.add(self.url)
        return sorted(urls)

    async def cluster_changes(self, seen: dict[str, str], wait_s: float) -> dict[str, str]:
        """Every worker's change token, once one differs from `seen` (worker URL -> token) or after
        `wait_s`. A worker that joined or left is a change: the partitions moved."""
        workers = self.workers()
        if set(seen) != set(workers):
            wait_s = 0

        async def token_of(url: str) -> str:
            if url == self.url:
                return await self.pipeline.changes.after(seen.get(url, ""), wait_s)
            params = {"after": seen.get(url, ""), "wait_s": str(wait_s)}
            return str((await self._fetch(url, "changes", params, timeout_s=wait_s + 10))["token"])

        waits = {url: asyncio.ensure_future(token_of(url)) for url in workers}
        try:
            pending = set(waits.values())
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if any(task.result() != seen.get(url) for url, task in waits.items() if task in done):
                    break
        finally:
            for task in waits.values():
                task.cancel()
        return {url: task.result() if task.done() else seen[url] for url, task in waits.items()}

    async def _fetch(self, url: str, path: str, params: dict[str, str], timeout_s: float = 10) -> Any:
        if url == self.url:
            return None  # answered locally by the caller
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session,
            session.get(f"{url}{API}/local/{path}", params=params, headers=self._headers()) as response,
        ):
            response.raise_for_status()
            return orjson.loads(await response.read())

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def cluster_windows(
        self, span: TimeRange, user: str | None = None, notebook: str | None = None
    ) -> dict[int, Window]:
        """Merged windows of the whole cluster for the span; with `user` or `notebook` (a path), only
        their share of them."""
        merged = self.local_windows(span.resolution, span.starts(), user, notebook)
        entity = {"user": user, "notebook": notebook}
        params = span.query() | {name: value for name, value in entity.items() if value is not None}
        remote = await asyncio.gather(*(self._fetch(url, "windows", params) for url in self.workers()))
        for answer in remote:
            for start, window in (answer or {}).get("windows", {}).items():
                merge_into(merged.setdefault(int(start), empty_window()), window)
        return dict(sorted(merged.items()))

    async def with_previous(
        self, span: TimeRange, user: str | None = None, notebook: str | None = None
    ) -> tuple[dict[int, Window], dict[int, Window]]:
        """The span's windows and those of the period of the same length before it, fetched together
        (with `user` or `notebook`: their share, as `cluster_windows`)."""
        current, previous = await asyncio.gather(
            self.cluster_windows(span, user, notebook), self.cluster_windows(span.previous(), user, notebook)
        )
        return current, previous

    async def cluster_health(self) -> list[dict[str, Any]]:
        answers = await asyncio.gather(*(self._fetch(url, "health", {}) for url in self.workers()))
        return [await self.local_health()] + [a for a in answers if a is not None]


def cluster_held_from(workers: list[dict[str, Any]]) -> dict[str, int | None]:
    """The oldest minute, hour and day window that every partition with data still holds (None: no data)."""
    floors = [
        info["held_from_ms"]
        for worker in workers
        for info in worker["partitions"].values()
        if info.get("held_from_ms")
    ]
    return {size: max((floor[size] for floor in floors), default=None) for size in RESOLUTIONS}


def _total(windows: dict[int, Window]) -> Window:
    total = empty_window()
    for window in windows.values():
        merge_into(total, window)
    return total


def overview(
    span: TimeRange, current: dict[int, Window], previous: dict[int, Window], namespace: str | None
) -> dict[str, Any]:
    minutes = span.span_ms / MINUTE_MS

    def kpis(windows: dict[int, Window]) -> dict[str, Any]:
        numbers = summary(_total(windows), namespace)
        numbers["events_per_min"] = numbers["events"] / minutes
        numbers["executions_per_min"] = numbers["executions"] / minutes
        numbers["failure_rate"] = (
            numbers["failures"] / numbers["executions"] if numbers["executions"] else None
        )
        return numbers

    return {
        "from_ms": span.from_ms,
        "to_ms": span.to_ms,
        "current": kpis(current),
        "previous": kpis(previous),
    }


def timeseries(
    span: TimeRange,
    windows: dict[int, Window],
    user: str | None,
    notebook: str | None,
    namespace: str | None,
) -> dict[str, Any]:
    points = []
    for start in span.starts():
        window = windows.get(start, empty_window())
        if user is not None or notebook is not None:
            point = _entity_point(select(window, namespace), user, notebook)
        else:
            point = summary(window, namespace)
        points.append({"start_ms": start, **point})
    return {"resolution": span.resolution, "from_ms": span.from_ms, "to_ms": span.to_ms, "points": points}


def _entity_point(part: Part, user: str | None, notebook: str | None) -> dict[str, Any]:
    """A user's or a notebook path's (or one user's notebook's) share of a window or a range."""

    events = executions = failures = 0
    names: dict[str, int] = {}
    errors: dict[str, int] = {}
    sessions: set[str] = set()
    for key, stats in part["notebooks"].items():
        owner, path = split_notebook_key(key)
        if (user is None or owner == user) and (notebook is None or path == notebook):
            events, executions, failures = events + stats[0], executions + stats[1], failures + stats[2]
            add_counts(errors, stats[3])
            add_counts(names, stats[4])
            sessions.update(stats[5])
    if notebook is None and user is not None and user in part["users"]:
        events, executions, failures, _, names = part["users"][user]  # includes events outside notebooks
        sessions = {session for session, owner in part["sessions"].items() if owner == user}
    return {
        "events": events,
        "events_by_name": dict(sorted(names.items())),
        "active_sessions": len(sessions),
        "executions": executions,
        "failures": failures,
        "failures_by_error": dict(sorted(errors.items())),
    }


def top(
    windows: dict[int, Window], dimension: str, limit: int, namespace: str | None
) -> list[dict[str, Any]]:
    part = select(_total(windows), namespace)
    if dimension == "users":
        rows = [
            {"user": user, "events": s[0], "executions": s[1], "failures": s[2], "last_seen_ms": s[3]}
            for user, s in part["users"].items()
        ]
    elif dimension == "notebooks":
        rows = []
        for key, s in part["notebooks"].items():
            user, path = split_notebook_key(key)
            rows.append(
                {"user": user, "notebook": path, "events": s[0], "executions": s[1], "failures": s[2]}
            )
    elif dimension == "errors":
        rows = [{"error": name, "failures": count} for name, count in part["errors"].items()]
    else:
        raise BadRequest("dimension is one of users, notebooks, errors")
    measure = "failures" if dimension == "errors" else "events"
    rows.sort(key=lambda row: (-row[measure], str(row)))
    return rows[:limit]


def namespaces(windows: dict[int, Window]) -> list[dict[str, Any]]:
    """Every namespace with events in the range, busiest first; null for events without one."""
    rows = [
        {
            "namespace": name or None,
            "events": sum(part["events"].values()),
            "active_users": len(part["users"]),
        }
        for name, part in _total(windows)["namespaces"].items()
    ]
    return sorted(rows, key=lambda row: (-row["events"], row["namespace"] or ""))


def _user_numbers(
    part: Part, windows: dict[int, Window], user: str, namespace: str | None, resolution: str
) -> dict[str, Any]:
    """A user's numbers over a range (`part`: its total): what their page compares with the previous
    period."""
    active = sum(
        1
        for window in windows.values()
        if any(user in p["users"] for name, p in window["namespaces"].items() if namespace in (None, name))
    )
    return {
        **_entity_point(part, user, None),
        "active_notebooks": sum(1 for key in part["notebooks"] if split_notebook_key(key)[0] == user),
        f"active_{resolution}s": active,
    }


def user_detail(
    span: TimeRange,
    windows: dict[int, Window],
    previous: dict[int, Window],
    user: str,
    namespace: str | None,
) -> dict[str, Any]:
    part = select(_total(windows), namespace)
    stats = part["users"].get(user)
    notebooks = [
        {"notebook": split_notebook_key(key)[1], "events": s[0], "executions": s[1], "failures": s[2],
         "failures_by_error": s[3], "events_by_name": dict(sorted(s[4].items()))}
        for key, s in sorted(part["notebooks"].items())
        if split_notebook_key(key)[0] == user
    ]  # fmt: skip
    return {
        "user": user,
        "found": stats is not None,
        **_user_numbers(part, windows, user, namespace, span.resolution),
        "last_seen_ms": stats[3] if stats else None,
        "sessions": sorted(session for session, owner in part["sessions"].items() if owner == user),
        "notebooks": notebooks,
        "timeline": timeseries(span, windows, user, None, namespace)["points"],
        "previous": _user_numbers(
            select(_total(previous), namespace), previous, user, namespace, span.resolution
        ),
    }


def _notebook_numbers(part: Part, path: str) -> dict[str, Any]:
    """A notebook path's numbers over a range (`part`: its total): what its page compares with the
    previous period."""
    return {
        **_entity_point(part, None, path),
        "active_users": sum(1 for key in part["notebooks"] if split_notebook_key(key)[1] == path),
    }


def notebook_detail(
    span: TimeRange,
    windows: dict[int, Window],
    previous: dict[int, Window],
    path: str,
    namespace: str | None,
) -> dict[str, Any]:
    part = select(_total(windows), namespace)
    users = []
    for key, s in sorted(part["notebooks"].items()):
        owner, notebook = split_notebook_key(key)
        if notebook == path:
            users.append({"user": owner, "events": s[0], "executions": s[1], "failures": s[2],
                          "events_by_name": dict(sorted(s[4].items()))})  # fmt: skip
    return {
        "notebook": path,
        "found": bool(users),
        **_notebook_numbers(part, path),
        "users": users,
        "timeline": timeseries(span, windows, None, path, namespace)["points"],
        "previous": _notebook_numbers(select(_total(previous), namespace), path),
    }


def _wait_s(request: Request) -> float:
    """How long a `changes` request may be held open: `wait_s`, at most MAX_WAIT_S (default 0)."""
    try:
        wait_s = float(request.query.get("wait_s", 0))
    except ValueError:
        raise BadRequest("wait_s must be a number of seconds") from None
    return min(max(wait_s, 0.0), MAX_WAIT_S)


def _encode_token(tokens: dict[str, str]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(tokens, option=orjson.OPT_SORT_KEYS)).decode()


def _decode_token(text: str) -> dict[str, str]:
    """A `changes` token back to worker URL -> token; anything else (none, stale, garbled) is "seen
    nothing", answered at once."""
    try:
        tokens = orjson.loads(base64.urlsafe_b64decode(text.encode()))
    except (binascii.Error, orjson.JSONDecodeError, ValueError):
        return {}
    if not isinstance(tokens, dict) or not all(isinstance(v, str) for v in tokens.values()):
        return {}
    return tokens


def register_api(app: faust.App, pipeline: LocalState, token: str | None) -> None:
    api = ReadApi(app, pipeline, token)
    if token is None:
        log.warning("read API without a token (PIONEER_WORKER_API_TOKEN): listening on 127.0.0.1 only")

    def guarded(handler: Any) -> Any:
        async def view(self: View, request: Request, **kwargs: Any) -> Response:
            if not api.authorized(request):
                return self.json(
                    {"error": "a valid bearer token is required"},
                    status=401,
                    headers={"WWW-Authenticate": 'Bearer realm="pioneer-telemetry"'},
                )
            try:
                return self.json(await handler(request, **kwargs))
            except BadRequest as error:
                return self.json({"error": str(error)}, status=400)
            except aiohttp.ClientError as error:
                return self.json({"error": f"a worker did not answer: {error}"}, status=503)

        return view

    async def local_windows(request: Request) -> Any:
        span, query = await api.span(request), request.query  # user, notebook: as cluster_windows sends
        windows = api.local_windows(span.resolution, span.starts(), query.get("user"), query.get("notebook"))
        return {"windows": {str(start): window for start, window in windows.items()}}

    async def local_health(request: Request) -> Any:
        return await api.local_health()

    async def local_changes(request: Request) -> Any:
        return {"token": await pipeline.changes.after(request.query.get("after", ""), _wait_s(request))}

    async def get_changes(request: Request) -> Any:
        seen = _decode_token(request.query.get("after", ""))
        tokens = await api.cluster_changes(seen, _wait_s(request))
        return {"token": _encode_token(tokens), "changed": tokens != seen}

    async def get_overview(request: Request) -> Any:
        span = await api.span(request)
        return overview(span, *await api.with_previous(span), _namespace(request))

    async def get_timeseries(request: Request) -> Any:
        span = await api.span(request)
        windows = await api.cluster_windows(span)
        query = request.query
        return timeseries(span, windows, query.get("user"), query.get("notebook"), _namespace(request))

    async def get_top(request: Request) -> Any:
        span = await api.span(request)
        dimension = request.query.get("dimension", "users")
        windows = await api.cluster_windows(span)
        return {
            "dimension": dimension,
            "rows": top(windows, dimension, _int(request, "limit", 10), _namespace(request)),
        }

    async def get_namespaces(request: Request) -> Any:
        span = await api.span(request)
        return {"namespaces": namespaces(await api.cluster_windows(span))}

    async def get_user(request: Request, user: str) -> Any:
        span = await api.span(request)
        return user_detail(span, *await api.with_previous(span, user), user, _namespace(request))

    async def get_notebook(request: Request) -> Any:
        span = await api.span(request)
        path = request.query.get("path")
        if not path:
            raise BadRequest("path is required")
        return notebook_detail(span, *await api.with_previous(span, notebook=path), path, _namespace(request))

    async def get_health(request: Request) -> Any:
        now = int(time.time() * 1000)
        span = TimeRange(now - DAY_MS, now, "minute")  # the wall clock's last day: see docs/api.md
        workers = await api.cluster_health()
        totals = summary(_total(await api.cluster_windows(span)))
        partitions = {p: info for worker in workers for p, info in worker["partitions"].items()}
        last_event = max((info["last_event_at"] or 0 for info in partitions.values()), default=0)
        return {
            "workers": [worker["worker"] for worker in workers],
            "partitions": partitions,
            "lag": sum(info["lag"] or 0 for info in partitions.values()),
            "last_event_at": last_event or None,
            "held_from_ms": cluster_held_from(workers),
            "day_time_zone": str(api.pipeline.calendar.zone),
            "last_24h": {key: totals[key] for key in ("events", *COUNTERS)},
            "crashes": {worker["worker"]: worker["last_crash"] for worker in workers if worker["last_crash"]},
        }

    async def live(self: View, request: Request) -> Response:
        """Liveness: the web server answers. No data, no token (for probes)."""
        return self.json({"status": "ok"})

    app.page(f"{API}/live", name="live")(type("live", (View,), {"get": live}))

    routes = {
        f"{API}/local/windows": local_windows,
        f"{API}/local/health": local_health,
        f"{API}/local/changes": local_changes,
        f"{API}/changes": get_changes,
        f"{API}/overview": get_overview,
        f"{API}/timeseries": get_timeseries,
        f"{API}/top": get_top,
        f"{API}/namespaces": get_namespaces,
        f"{API}/users/{{user}}": get_user,
        f"{API}/notebooks": get_notebook,
        f"{API}/health": get_health,
    }
    for path, handler in routes.items():
        view = type(handler.__name__, (View,), {"get": guarded(handler)})
        app.page(path, name=handler.__name__)(view)
