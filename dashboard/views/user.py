"""A user's page: their numbers against the previous period, events and executions over time, notebooks
and sessions; in the chosen namespace, events of the chosen names."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import charts, model, ui

VIEWS = Path(__file__).parent

user = ui.detail_choice("User", ui.user_label(), "users", key="user", placeholder="Choose a user")


@st.fragment(run_every=ui.settings().refresh_s)
def user_page(user: str) -> None:
    shown = ui.detail(
        lambda span, namespace: ui.api().user(span, user, namespace),
        f"No events from **{user}** in this range (and namespace): choose a longer range.",
        ":material/person_off:",
    )
    if shown is None:
        return
    span, detail = shown
    tz, names = ui.viewer_zone(), ui.event_filter()
    tiles = model.user_kpis(detail, span, tz, names)
    ui.kpi_row(tiles, span, model.drilldown_sparklines(tiles, detail["timeline"], names))

    ui.activity_charts(detail["timeline"], span, names)

    notebooks = model.user_notebooks_frame(detail, names)
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
            ui.open_page(VIEWS / "notebook.py", notebook=path)
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
