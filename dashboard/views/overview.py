"""Overview: KPIs against the previous period, activity over time, top users/notebooks/errors, health."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import charts, model, ui
from dashboard.client import ApiError, Span

VIEWS = Path(__file__).parent
TOP = 10

st.header("JupyterLab activity", anchor=False)
ui.pseudonym_note()


def sparklines(points: list[dict], names: list[str]) -> list[list[float]]:
    return [
        [p["active_users"] for p in points],
        [p["active_sessions"] for p in points],
        [p["active_notebooks"] for p in points],
        [model.filtered_events(p, names) for p in points],
        [p["executions"] for p in points],
        [model.failure_rate(p) or 0.0 for p in points],
    ]


@st.fragment(run_every=ui.settings().refresh_s)
def overview() -> None:
    span = ui.span()
    if span is None:
        return
    ui.range_caption(span)
    api, namespace, names = ui.api(), ui.namespace_filter(), ui.event_filter()
    try:
        health = api.health()
        numbers = api.overview(span, namespace)
        points = api.timeseries(span, namespace)["points"]
        top_users = api.top(span, "users", TOP, namespace)
        top_notebooks = api.top(span, "notebooks", TOP, namespace)
        top_errors = api.top(span, "errors", TOP, namespace)
    except ApiError as error:
        ui.api_problem(error)
        return
    never = health.get("last_event_at") is None and not health.get("last_24h", {}).get("events")
    if never and not model.has_data(numbers):
        ui.no_telemetry()
        ui.health_panel(health)
        return

    ui.kpi_row(model.kpis(numbers, span, names), span, sparklines(points, names))
    ui.health_panel(health)
    if not numbers["current"]["events"]:
        st.info(
            "No events in this range. The pipeline has data (see above): choose a longer range, "
            "or check the namespace and event-name filters.",
            icon=":material/event_busy:",
        )
        return

    charts_section(points, span, names)
    tables_section(top_users, top_notebooks, top_errors)
    if span.resolution == "hour" and span.to_ms - span.from_ms >= model.DAY_MS:  # hours of weekdays
        with st.container(border=True):
            st.subheader("When people work", anchor=False)
            st.caption("Events by weekday and hour of day over the range.")
            tz = ui.viewer_zone()
            ui.chart(charts.heatmap_chart(model.heatmap_frame(points, tz, names), tz.key))


def charts_section(points: list[dict], span: Span, names: list[str]) -> None:
    tz, resolution = ui.chart_zone(span), span.resolution
    with st.container(border=True):
        st.subheader("Events by name", anchor=False)
        ui.chart(charts.events_chart(model.events_by_name_frame(points, tz, names), resolution))
    left, right = st.columns(2)
    with left.container(border=True):
        st.subheader("Active users", anchor=False)
        ui.chart(charts.users_chart(model.points_frame(points, tz), resolution))
    with right.container(border=True):
        st.subheader("Executions and failures", anchor=False)
        ui.chart(charts.executions_chart(model.executions_frame(points, tz), resolution))


def tables_section(top_users: list[dict], top_notebooks: list[dict], top_errors: list[dict]) -> None:
    """Top users, errors and notebooks; selecting a user or notebook row opens its page."""
    tz = ui.viewer_zone()
    users = model.top_frame(top_users, "users", tz)
    notebooks = model.top_frame(top_notebooks, "notebooks", tz)
    errors = model.top_frame(top_errors, "errors", tz)
    left, right = st.columns([2, 1])
    with left.container(border=True):
        st.subheader("Top users", anchor=False)
        st.caption("Select a row to open the user's page.")
        selected = ui.table(
            users, key="top_users", file_name="top-users.csv", selectable=True,
            column_config={
                "user": ui.user_column(),
                "events": ui.bar_column("Events", users, "events"),
                "executions": ui.number_column("Executions"),
                "failures": ui.number_column("Failures"),
                "last_seen": st.column_config.DatetimeColumn("Last seen", format="D MMM HH:mm", width=100),
            },
        )  # fmt: skip
        if selected:
            ui.open_page(VIEWS / "user.py", user=users.iloc[selected[0]]["user"])
    with right.container(border=True):
        st.subheader("Top errors", anchor=False)
        st.caption("Failed cell executions by error name.")
        ui.table(errors, key="top_errors", file_name="top-errors.csv", column_config=ui.error_columns(errors))
    with st.container(border=True):
        st.subheader("Top notebooks", anchor=False)
        st.caption("A notebook is one user's file. Select a row to see everyone working on that path.")
        selected = ui.table(
            notebooks, key="top_notebooks", file_name="top-notebooks.csv", selectable=True,
            column_config={
                "user": ui.user_column(),
                "notebook": st.column_config.TextColumn("Notebook", width="large"),
                "events": ui.bar_column("Events", notebooks, "events"),
                "executions": ui.number_column("Executions"),
                "failures": ui.number_column("Failures"),
            },
        )  # fmt: skip
        if selected:
            path = notebooks.iloc[selected[0]]["notebook"]
            ui.open_page(VIEWS / "notebook.py", notebook=path)


overview()
