"""Altair charts from the frames in `dashboard.model`: clear axes, units, one color per event name."""

from __future__ import annotations

import altair as alt
import pandas as pd

from dashboard.model import EXECUTIONS_COLOR, FAILURES_COLOR, WEEKDAYS, event_color, ordered_event_names

HEIGHT = 240  # of the plot; see `element_height`


def element_height(chart: alt.Chart) -> int:
    """The height to give st.altair_chart: Streamlit's default ("content") does not follow the chart's own
    height, so the plot's height plus room for the axes and a bottom legend."""
    return (chart.height if isinstance(chart.height, int) else HEIGHT) + 90


AXIS_FORMATS = {"minute": "%H:%M", "hour": "%a %d %H:%M", "day": "%d %b"}
TOOLTIP_FORMATS = {"minute": "%Y-%m-%d %H:%M", "hour": "%Y-%m-%d %H:%M", "day": "%a %Y-%m-%d"}


def _time_axis(resolution: str) -> alt.X:
    return alt.X("time:T", title="Time", axis=alt.Axis(format=AXIS_FORMATS[resolution], labelOverlap=True))


def _window_tooltip(resolution: str) -> alt.Tooltip:
    return alt.Tooltip("time:T", title="Window", format=TOOLTIP_FORMATS[resolution])


def event_color_scale(names: list[str]) -> alt.Scale:
    names = ordered_event_names(names)
    return alt.Scale(domain=names, range=[event_color(n) for n in names])


def events_chart(frame: pd.DataFrame, resolution: str) -> alt.Chart:
    """Events per window, stacked by event name."""
    names = ordered_event_names(frame["event"].unique())
    order = {name: i for i, name in enumerate(names)}
    frame = frame.assign(order=frame["event"].map(order))
    return (
        alt.Chart(frame, height=HEIGHT)
        .mark_bar()
        .encode(
            x=_time_axis(resolution),
            y=alt.Y("sum(events):Q", title=f"Events per {resolution}", stack="zero"),
            color=alt.Color(
                "event:N",
                title="Event",
                scale=event_color_scale(names),
                legend=alt.Legend(orient="right", labelLimit=220),
            ),
            order=alt.Order("order:Q"),
            tooltip=[
                _window_tooltip(resolution),
                alt.Tooltip("event:N", title="Event"),
                alt.Tooltip("events:Q", title="Events", format=","),
            ],
        )
    )


def users_chart(frame: pd.DataFrame, resolution: str) -> alt.Chart:
    """Distinct active users per window."""
    return (
        alt.Chart(frame, height=HEIGHT)
        .mark_area(line={"color": "#6a3d9a"}, color="#cab2d6", opacity=0.6, interpolate="step-after")
        .encode(
            x=_time_axis(resolution),
            y=alt.Y("active_users:Q", title=f"Active users per {resolution}", axis=alt.Axis(tickMinStep=1)),
            tooltip=[
                _window_tooltip(resolution),
                alt.Tooltip("active_users:Q", title="Active users"),
                alt.Tooltip("active_sessions:Q", title="Sessions"),
            ],
        )
    )


def executions_chart(frame: pd.DataFrame, resolution: str) -> alt.Chart:
    """Cell executions and the failed ones, per window."""
    return (
        alt.Chart(frame, height=HEIGHT)
        .mark_line(point=alt.OverlayMarkDef(size=18))
        .encode(
            x=_time_axis(resolution),
            y=alt.Y("count:Q", title=f"Cell executions per {resolution}", axis=alt.Axis(tickMinStep=1)),
            color=alt.Color(
                "series:N",
                title=None,
                scale=alt.Scale(domain=["executions", "failures"], range=[EXECUTIONS_COLOR, FAILURES_COLOR]),
                legend=alt.Legend(orient="bottom"),
            ),
            tooltip=[
                _window_tooltip(resolution),
                alt.Tooltip("series:N", title="Series"),
                alt.Tooltip("count:Q", title="Count", format=","),
            ],
        )
    )


def heatmap_chart(frame: pd.DataFrame, tz_name: str) -> alt.Chart:
    """Events by hour of day and weekday."""
    return (
        alt.Chart(frame, height=220)
        .mark_rect(cornerRadius=2)
        .encode(
            x=alt.X("hour:O", title=f"Hour of day ({tz_name})"),
            y=alt.Y("weekday:O", title=None, sort=list(WEEKDAYS)),
            color=alt.Color("events:Q", title="Events", scale=alt.Scale(scheme="blues")),
            tooltip=[
                alt.Tooltip("weekday:O", title="Weekday"),
                alt.Tooltip("hour:O", title="Hour"),
                alt.Tooltip("events:Q", title="Events", format=","),
            ],
        )
    )


def errors_chart(frame: pd.DataFrame) -> alt.Chart:
    """Failed executions by error name (horizontal bars)."""
    return (
        alt.Chart(frame, height=max(60, 26 * len(frame)))
        .mark_bar(color=FAILURES_COLOR)
        .encode(
            x=alt.X("failures:Q", title="Failed executions", axis=alt.Axis(tickMinStep=1)),
            y=alt.Y("error:N", title=None, sort="-x"),
            tooltip=[alt.Tooltip("error:N", title="Error"), alt.Tooltip("failures:Q", title="Failures")],
        )
    )
