"""The Streamlit pieces every page shares: filters, states, KPI tiles, tables, the health panel."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import charts, model
from dashboard.client import Api, ApiError, ApiUnreachable, Span
from dashboard.settings import DashboardSettings

NEBARI_SNIPPET = """\
# nebari-config.yaml
telemetry:
  jupyterlab_pioneer:
    enabled: true
    # the exporter's Python logging format; Nebari's default shown (the parser must use the same)
    log_format: "%(asctime)s %(levelname)9s %(lineno)4s %(module)s: %(message)s"
"""

LEVEL_BADGES = {
    "live": ("Live", "green"),
    "behind": ("Catching up", "blue"),
    "quiet": ("Quiet platform", "gray"),
    "broken": ("Broken pipeline", "red"),
    "empty": ("No data", "orange"),
}


def settings() -> DashboardSettings:
    return DashboardSettings()


def api() -> Api:
    current = settings()
    token = current.api_token.get_secret_value() if current.api_token else None
    return Api(current.api_url, current.timeout_s, token)


CHANGES_WAIT_S = 0.5  # one long poll on /changes: also how long a click may wait behind it
MIN_RERUN_S = 1.0  # a busy platform changes all the time: the page redraws at most this often


def follow_changes() -> None:
    """Call after the page is drawn: from then on it is redrawn as soon as the workers count new events."""
    st.session_state["_page_drawn"] = True
    _follow_changes()


@st.fragment(run_every=0.1)
def _follow_changes() -> None:
    """A long poll on the API's `/changes` between page runs, so new numbers show within a second
    instead of up to a refresh interval later. Draws nothing; the pages still refresh every `refresh_s`
    (a range like "last hour" moves without new events)."""
    state = st.session_state
    if state.pop("_page_drawn", False):
        return  # this is the page's own run, drawn just now: wait in the next one, not here
    try:
        answer = api().changes(state.get("_changes_token", ""), CHANGES_WAIT_S)
    except ApiError:
        time.sleep(CHANGES_WAIT_S)  # the page shows the problem; ask again later
        return
    seen_before = "_changes_token" in state
    state["_changes_token"] = answer["token"]
    if not (answer["changed"] and seen_before):
        return
    wait = state.get("_last_rerun", 0.0) + MIN_RERUN_S - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    state["_last_rerun"] = time.monotonic()
    st.rerun()


def viewer_zone() -> ZoneInfo:
    return model.zone(st.context.timezone)


def now_ms() -> int:
    return int(time.time() * 1000)


@st.cache_data(ttl=timedelta(seconds=5), show_spinner=False)
def _held(api_url: str) -> model.Held:
    try:
        return model.Held.from_health(api().health())
    except ApiError:
        return model.Held()  # the page's own requests say what is wrong


def held() -> model.Held:
    """What the worker still holds (by stream time): which resolution a range is shown at."""
    return _held(settings().api_url)


def chart_zone(span: Span) -> ZoneInfo:
    """Day windows are days of the worker's zone: drawn there, so each shows its own date."""
    return held().day_zone if span.resolution == "day" else viewer_zone()


# -- filters (query parameters: every widget is bound to one, so a URL shares the view) ----------------

FILTER_KEYS = (
    "range",
    "from",
    "to",
    "term_from",
    "term_to",
    "namespace",
    "event",
)  # widgets' keys = URL parameters


def _prefill_custom_range() -> None:
    """Switching to Custom starts from the range shown before, not from empty inputs."""
    if st.session_state.get("range") != "custom" or st.session_state.get("from"):
        return
    previous = st.session_state.get("_last_relative", model.DEFAULT_RANGE)
    span = model.relative_span(previous, now_ms(), held())
    tz = viewer_zone()
    st.session_state["from"] = model.local_time(span.from_ms, tz)
    st.session_state["to"] = model.local_time(span.to_ms, tz)


def sidebar_filters() -> None:
    """The filters every page shares; pages read them with `span()`, `namespace_filter()` and
    `event_filter()`."""
    with st.sidebar:
        choice = st.segmented_control(
            "Time range",
            list(model.RANGES),  # the option is the URL's value: no format_func, or the URL shows labels
            default=model.DEFAULT_RANGE,
            required=True,
            key="range",
            bind="query-params",
            on_change=_prefill_custom_range,
        )
        if choice == "term":
            months = model.month_choices(now_ms(), held().day_zone)
            st.selectbox("First month", months, index=min(4, len(months) - 1), key="term_from",
                         bind="query-params", help="Whole months, in the day windows' time zone")  # fmt: skip
            st.selectbox("Last month", months, index=0, key="term_to", bind="query-params")
        elif choice != "custom":
            st.session_state["_last_relative"] = choice
        else:
            st.datetime_input("From", value=None, key="from", bind="query-params", step=timedelta(minutes=1),
                              format="YYYY-MM-DD", help="Wall-clock time in your browser's time zone")  # fmt: skip
            st.datetime_input("To", value=None, key="to", bind="query-params", step=timedelta(minutes=1),
                              format="YYYY-MM-DD")  # fmt: skip
        st.selectbox(
            "Namespace",
            known_namespaces(),
            index=None,
            key="namespace",
            bind="query-params",
            accept_new_options=True,  # a shared URL keeps its namespace, even one without events now
            placeholder="All namespaces",
            help="Only the users' pods in this Kubernetes namespace; the pipeline panel is for all of them.",
        )
        st.multiselect(
            "Event names",
            model.EVENT_NAMES,
            key="event",
            bind="query-params",
            placeholder="All events",
            help="Restricts event counts and the events charts; users, sessions and executions are not "
            "filtered.",
        )


def open_page(page: Path, **params: str) -> None:
    """Open a user's or a notebook's page from a table, the filters along: the switch happens at the
    start of the app's next run (`follow_open_page`)."""
    st.session_state["_open_page"] = (page, params)
    st.rerun()


def follow_open_page() -> None:
    """The page switch `open_page` asked for, before the filters' widgets run; and on the page switched
    to, the filters set again before their widgets run. Streamlit (1.67) writes a bound widget's value
    back into the URL after a switch only when it was set in the same run that registers the widget:
    without that, the filters stay in force but drop out of the URL, now and then."""
    state = st.session_state
    if state.pop("_switched", False):
        for key in FILTER_KEYS:
            if key in state:
                state[key] = state[key]
    target = state.pop("_open_page", None)
    if target is None:
        return
    page, params = target
    state["_switched"] = True
    st.switch_page(page, query_params=params)


def namespace_filter() -> str | None:
    return st.session_state.get("namespace") or None


def event_filter() -> list[str]:
    return list(st.session_state.get("event") or [])


def _span() -> Span | str:
    """The chosen range, or why there is none (custom range incomplete or invalid)."""
    choice = st.session_state.get("range") or model.DEFAULT_RANGE
    if choice == "term":
        first, last = st.session_state.get("term_from"), st.session_state.get("term_to")
        if not (first and last):
            return "Choose the first and the last month of the term in the sidebar."
        try:
            return model.term_span(first, last, held())
        except ValueError as error:
            return f"Invalid term: {error}."
    if choice != "custom":
        return model.relative_span(choice, now_ms(), held())
    start, end = st.session_state.get("from"), st.session_state.get("to")
    if start is None or end is None:
        return "Choose the start and the end of the custom range in the sidebar."
    try:
        return model.custom_span(start, end, viewer_zone(), held())
    except ValueError as error:
        return f"Invalid range: {error}."


def span() -> Span | None:
    """The chosen range, or None after saying why there is none."""
    current = _span()
    if isinstance(current, str):
        st.info(current, icon=":material/date_range:")
        return None
    return current


def known(dimension: str) -> list[str]:
    """Users or notebook paths active in the chosen range and namespace, busiest first (choices of a
    page's selector)."""
    current = _span()
    if isinstance(current, str):
        return []
    try:
        rows = api().top(current, dimension, 1000, namespace_filter())
    except ApiError:
        return []
    field = "user" if dimension == "users" else "notebook"
    return list(dict.fromkeys(row[field] for row in rows))


def known_namespaces() -> list[str]:
    """Namespaces with events in the chosen range, busiest first (events without one are not choosable)."""
    current = _span()
    if isinstance(current, str):
        return []
    try:
        rows = api().namespaces(current)
    except ApiError:
        return []
    return [row["namespace"] for row in rows if row["namespace"]]


def range_caption(current: Span) -> None:
    parts = [model.describe_span(current, chart_zone(current))]
    namespace = namespace_filter()
    if namespace:
        parts.append(f"namespace {namespace}")
    parts.append(f"changes against the previous {model.period_name(current)}")
    parts += [f"live, and refreshed every {settings().refresh_s:g} s", f"API {settings().api_url}"]
    st.caption(" · ".join(parts))


# -- states ------------------------------------------------------------------------------------------


def api_problem(error: ApiError) -> None:
    every = f"{settings().refresh_s:g} s"
    if isinstance(error, ApiUnreachable):
        st.error(
            f"**Cannot reach the worker's API at {settings().api_url}** ({error.message}).\n\n"
            f"Tried `{error.url}`. Retrying every {every}. Is `pioneer-telemetry worker` running there? "
            "Set `PIONEER_DASHBOARD_API_URL` (or `--api-url`) to another worker's address.",
            icon=":material/cloud_off:",
        )
    elif error.status == 401:
        st.error(
            f"**The worker's API at {settings().api_url} wants a token**: set `PIONEER_DASHBOARD_API_TOKEN` "
            "(or `PIONEER_DASHBOARD_API_TOKEN_FILE`) to the workers' `PIONEER_WORKER_API_TOKEN`.\n\n"
            f"Tried `{error.url}`. Retrying every {every}.",
            icon=":material/lock:",
        )
    else:
        st.error(
            f"**The worker's API at {settings().api_url} answered with an error**: {error.message}\n\n"
            f"Tried `{error.url}`. Retrying every {every}.",
            icon=":material/error:",
        )


def no_telemetry() -> None:
    st.warning("**No telemetry has reached the pipeline yet.**", icon=":material/hourglass_empty:")
    st.markdown(
        "The charts appear once the first events arrive. To get events:\n\n"
        "1. Enable the jupyterlab-pioneer exporter in your `nebari-config.yaml` and run `nebari deploy`:"
    )
    st.code(NEBARI_SNIPPET, language="yaml")
    st.markdown(
        "2. Forward the JupyterLab pods' logs to Kafka: `pioneer-telemetry collect --path "
        "'/var/log/containers/*.log'` on each node (or Fluent Bit), and run `pioneer-telemetry worker` "
        "with the same `log_format` (`PIONEER_PARSER_NEBARI_CONFIG=nebari-config.yaml`).\n"
        "3. Open a notebook in JupyterLab: its events show here within seconds.\n\n"
        "Trying it locally? `pioneer-telemetry up` runs the whole stack with simulated users."
    )


# -- pieces ------------------------------------------------------------------------------------------


def kpi_row(
    tiles: Sequence[model.Kpi], current: Span, sparklines: Sequence[Sequence[float] | None] | None = None
) -> None:
    columns = st.columns(len(tiles))
    period = model.period_name(current)
    for index, (column, tile) in enumerate(zip(columns, tiles, strict=True)):
        unchanged = tile.value is not None and tile.value == tile.previous
        compared = tile.previous_text is not None
        column.metric(
            tile.label,
            tile.text,
            delta=tile.delta,
            delta_color="off" if unchanged else ("inverse" if tile.lower_is_better else "normal"),
            delta_arrow="off" if unchanged else "auto",
            help=f"{tile.help}. Previous {period}: {tile.previous_text}." if compared else tile.help,
            border=True,
            height="stretch",  # tiles without a sparkline as tall as those with one
            chart_data=sparklines[index] if sparklines else None,
            chart_type="area",
        )


def chart(spec: alt.Chart) -> None:
    st.altair_chart(spec, height=charts.element_height(spec))


def activity_charts(timeline: list[dict[str, Any]], span: Span, names: list[str]) -> None:
    """Events by name and executions with failures over time, side by side: a user's or a notebook's."""
    tz = chart_zone(span)
    left, right = st.columns(2)
    with left.container(border=True):
        st.subheader("Activity", anchor=False)
        chart(charts.events_chart(model.events_by_name_frame(timeline, tz, names), span.resolution))
    with right.container(border=True):
        st.subheader("Executions and failures", anchor=False)
        chart(charts.executions_chart(model.executions_frame(timeline, tz), span.resolution))


def table(
    frame: pd.DataFrame,
    *,
    key: str,
    file_name: str,
    column_config: dict[str, Any] | None = None,
    selectable: bool = False,
    height: int | str = "auto",
) -> list[int]:
    """A table with a CSV download of exactly what it shows; returns the selected rows, if selectable."""
    event = st.dataframe(
        frame,
        key=key,
        hide_index=True,
        column_config=column_config,
        on_select="rerun" if selectable else "ignore",
        selection_mode="single-row",
        height=height,
    )
    st.download_button(
        "CSV",
        frame.to_csv(index=False).encode(),
        file_name=file_name,
        mime="text/csv",
        key=f"{key}_csv",
        on_click="ignore",
        icon=":material/download:",
        type="tertiary",
        help=f"Download this table as {file_name}",
    )
    return list(event.selection.rows) if selectable else []


def bar_column(label: str, frame: pd.DataFrame, column: str, color: str = "#1f77b4", width: int = 130) -> Any:
    """A number drawn with a bar scaled to the column's largest value."""
    top = int(frame[column].max()) if len(frame) else 1
    return st.column_config.ProgressColumn(
        label, format="%d", min_value=0, max_value=max(top, 1), color=color, width=width
    )


def error_columns(errors: pd.DataFrame) -> dict[str, Any]:
    """Columns of a failures-by-error table."""
    return {
        "error": st.column_config.TextColumn("Error", width=150),
        "failures": bar_column("Failures", errors, "failures", "#d62728", width=110),
    }


def number_column(label: str) -> Any:
    return st.column_config.NumberColumn(label, format="%d", width=82)


def user_label() -> str:
    return "User (pseudonym)" if settings().pseudonymized else "User"


def user_column() -> Any:
    return st.column_config.TextColumn(user_label(), width=170)


def pseudonym_note() -> None:
    if settings().pseudonymized:
        st.caption(
            ":material/visibility_off: Usernames are pseudonyms: the pipeline replaces them by keyed hashes."
        )


# -- detail pages (a user, a notebook) ---------------------------------------------------------------


def detail_choice(
    title: str, label: str, dimension: str, *, key: str, placeholder: str, help: str | None = None
) -> str | None:
    """A detail page's header and its choice of what to show, bound to the URL's query parameter `key`:
    one of the range's known `dimension` (users, notebooks), or a name typed in."""
    st.header(title, anchor=False)
    pseudonym_note()
    return st.selectbox(
        label,
        known(dimension),
        index=None,
        key=key,
        bind="query-params",
        accept_new_options=True,
        placeholder=placeholder,
        help=help,
    )


def detail(
    fetch: Callable[[Span, str | None], dict[str, Any]], missing: str, icon: str
) -> tuple[Span, dict[str, Any]] | None:
    """The chosen range (captioned) and what `fetch` answers for it in the chosen namespace; None after
    saying why there is nothing to draw: no valid range, the API's problem, or nothing found (`missing`)."""
    current = span()
    if current is None:
        return None
    range_caption(current)
    try:
        found = fetch(current, namespace_filter())
    except ApiError as error:
        api_problem(error)
        return None
    if not found["found"]:
        st.info(missing, icon=icon)
        return None
    return current, found


def health_panel(health: dict[str, Any]) -> model.HealthStatus:
    """Consumer lag, dead letters, late events, last event seen; and what they mean."""
    now_s = time.time()
    status = model.assess_health(health, now_s)
    label, color = LEVEL_BADGES[status.level]
    day = health.get("last_24h", {})
    with st.container(border=True):
        head, lag, dead, late, seen = st.columns([3, 1, 1, 1, 1.3])
        with head:
            st.markdown(f"**Pipeline** &nbsp; :{color}-badge[{label}]")
            if status.level == "broken":
                st.markdown(f":red[{status.detail}]")
            else:
                st.caption(status.detail)
        lag.metric("Consumer lag", model.fmt_count(status.lag), help="Raw-topic lines not processed yet")
        dead.metric("Dead letters", model.fmt_count(day.get("dead_letters", 0)),
                    help="Last 24 h: lines that looked like events but could not be parsed")  # fmt: skip
        late.metric("Late events", model.fmt_count(day.get("late", 0)),
                    help="Last 24 h: events older than their source's watermark minus the grace period, "
                    "counted in their hour and day windows but not in a minute window")  # fmt: skip
        age = status.last_event_age_s
        seen.metric("Last event", "never" if age is None else f"{model.fmt_duration(age)} ago",
                    help="When a worker last processed an event (its wall clock)")  # fmt: skip
        for note in status.notes:
            st.caption(f":material/info: {note}")
        with st.expander("Partitions and workers"):
            st.caption("Workers: " + ", ".join(health.get("workers", [])))
            table(
                model.partitions_frame(health, viewer_zone(), now_s),
                key="partitions",
                file_name="partitions.csv",
                column_config={
                    "stream_time": st.column_config.DatetimeColumn(
                        "Stream time", format="YYYY-MM-DD HH:mm:ss"
                    ),
                    "last_event": "Last event",
                },
            )
    return status
