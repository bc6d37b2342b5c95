"""A notebook path's page: its numbers against the previous period, who works on it, failures by error
name, events and executions over time; in the chosen namespace, events of the chosen names."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import model, ui

VIEWS = Path(__file__).parent

notebook = ui.detail_choice(
    "Notebook",
    "Notebook path",
    "notebooks",
    key="notebook",
    placeholder="Choose a notebook path",
    help="Every user has their own home directory: the page shows everyone with a notebook at this path.",
)


@st.fragment(run_every=ui.settings().refresh_s)
def notebook_page(path: str) -> None:
    shown = ui.detail(
        lambda span, namespace: ui.api().notebook(span, path, namespace),
        f"Nobody worked on **{path}** in this range (and namespace): choose a longer range.",
        ":material/draft:",
    )
    if shown is None:
        return
    span, detail = shown
    names = ui.event_filter()
    tiles = model.notebook_kpis(detail, names)
    ui.kpi_row(tiles, span, model.drilldown_sparklines(tiles, detail["timeline"], names))

    users = model.notebook_users_frame(detail, names)
    errors = model.errors_frame(detail["failures_by_error"])
    left, right = st.columns([3, 2])
    with left.container(border=True):
        st.subheader("Who works on it", anchor=False)
        st.caption("Select a row to open the user's page.")
        selected = ui.table(
            users, key="notebook_users", file_name="notebook-users.csv", selectable=True,
            column_config={
                "user": ui.user_column(),
                "events": ui.bar_column("Events", users, "events"),
                "executions": ui.number_column("Executions"),
                "failures": ui.number_column("Failures"),
            },
        )  # fmt: skip
        if selected:
            ui.open_page(VIEWS / "user.py", user=users.iloc[selected[0]]["user"])
    with right.container(border=True):
        st.subheader("Failures by error", anchor=False)
        if len(errors):
            ui.table(errors, key="notebook_errors", file_name="notebook-errors.csv",
                     column_config=ui.error_columns(errors))  # fmt: skip
        else:
            st.caption("No failed executions in this range.")
    ui.activity_charts(detail["timeline"], span, names)


if notebook:
    notebook_page(notebook)
else:
    st.info("Choose a notebook path above, or select one in the overview's Top notebooks table.",
            icon=":material/search:")  # fmt: skip
