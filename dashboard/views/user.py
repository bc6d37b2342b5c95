"""A user's page: their totals, executions and failures over time, notebooks and sessions."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import charts, model, ui
from dashboard.client import ApiError

VIEWS = Path(__file__).parent

st.header("User", anchor=False)
ui.pseudonym_note()
user = st.selectbox(
    ui.user_label(),
    ui.known("users"),
    index=None,
    key="user",
    bind="query-params",
    accept_new_options=True,
    placeholder="Choose a user",
)


@st.fragment(run_every=ui.settings().refresh_s)
def user_page(user: str) -> None:
    span = ui.span()
    if span is None:
        return
    ui.range_caption(span)
    tz = ui.viewer_zone()
    try:
        detail = ui.api().user(span, user)
    except ApiError as error:
        ui.api_problem(error)
        return
    if not detail["found"]:
        st.info(
            f"No events from **{user}** in this range: choose a longer range.", icon=":material/person_off:"
        )
        return
    unit = "minutes" if span.resolution == "minute" else "hours"
    executions, failures = detail["executions"], detail["failures"]
    last_seen = model.maybe_local_time(detail["last_seen_ms"], tz)
    tiles = [
        ("Events", model.fmt_count(detail["events"]), "Pioneer events in the range"),
        ("Executions", model.fmt_count(executions), "Cell executions"),
        ("Failures", model.fmt_count(failures), "Cell executions that raised an error"),
        ("Failure rate", model.fmt_percent(failures / executions if executions else None), "Failures / executions"),
        (f"Active {unit}", model.fmt_count(detail.get(f"active_{unit}")), f"{unit.capitalize()} with at least one event"),
        ("Last seen", f"{last_seen:%H:%M}" if last_seen else "–", f"Last event ({tz.key}): {last_seen}"),
    ]  # fmt: skip
    for column, (label, value, help) in zip(st.columns(len(tiles)), tiles, strict=True):
        column.metric(label, value, help=help, border=True)

    timeline = detail["timeline"]
    left, right = st.columns(2)
    with left.container(border=True):
        st.subheader("Activity", anchor=False)
        ui.chart(charts.activity_chart(model.points_frame(timeline, tz), span.resolution))
    with right.container(border=True):
        st.subheader("Executions and failures", anchor=False)
        ui.chart(charts.executions_chart(model.executions_frame(timeline, tz), span.resolution))

    notebooks = model.user_notebooks_frame(detail)
    errors = model.errors_frame(model.user_failures_by_error(detail))
    left, right = st.columns([2, 1])
    with left.container(border=True):
        st.subheader("Notebooks", anchor=False)
        st.caption("Select a row to see everyone working on that path.")
        selected = ui.table(
            notebooks, key="user_notebooks", file_name=f"{user}-notebooks.csv", selectable=True,
            column_config={
                "notebook": st.column_config.TextColumn("Notebook", width=200),
                "events": ui.bar_column("Events", notebooks, "events", width=115),
                "executions": ui.number_column("Executions"),
                "failures": ui.number_column("Failures"),
                "errors": "Failures by error",
            },
        )  # fmt: skip
        if selected:
            path = notebooks.iloc[selected[0]]["notebook"]
            st.switch_page(VIEWS / "notebook.py", query_params={"notebook": path})
    with right.container(border=True):
        st.subheader("Failures by error", anchor=False)
        if len(errors):
            ui.chart(charts.errors_chart(errors))
        else:
            st.caption("No failed executions in this range.")
    sessions = model.sessions_frame(detail)
    with st.expander(f"JupyterLab sessions ({len(sessions)})"):
        ui.table(sessions, key="user_sessions", file_name=f"{user}-sessions.csv",
                 column_config={"session": "Session id"})  # fmt: skip


if user:
    user_page(user)
else:
    st.info(
        "Choose a user above, or select one in the overview's Top users table.",
        icon=":material/person_search:",
    )
