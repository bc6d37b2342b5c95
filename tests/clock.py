"""Simulated times for tests whose code under test reads the wall clock ("last 24 h", default ranges):
they come from now, so the suite passes on any date. Clock-free code (parsers, framing, window math) may
use fixed historical times instead."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

HOUR_MS = 3_600_000


def recent_hour(hours_ago: int = 3) -> datetime:
    """The start of the UTC hour `hours_ago` hours before now: whole minute and hour windows, in the
    past, and well inside the last 24 h."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours_ago)


def iso(moment: datetime) -> str:
    """`2026-11-26T09:00:00Z`, as `pioneer-telemetry simulate --start` takes it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
