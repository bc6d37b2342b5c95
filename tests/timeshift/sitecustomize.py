"""The clock guard's start-up hook: with this folder on PYTHONPATH and `CLOCK_SHIFT_DAYS` set, every
Python process of the test run (pytest, workers, simulators, the dashboard) starts with its wall clock
moved that many days ahead, ticking. `make test-clock` runs the date-sensitive tests so, to catch a test
that depends on the day it runs (a fixed date meeting a rule measured against the wall clock).
Monotonic clocks are not moved: timeouts and event loops keep working. The Kafka broker (Java) keeps
the real clock."""

import os

_DAYS = os.environ.get("CLOCK_SHIFT_DAYS")
if _DAYS:
    from datetime import UTC, datetime, timedelta

    import time_machine

    _TRAVEL = time_machine.travel(datetime.now(UTC) + timedelta(days=float(_DAYS)), tick=True)
    _TRAVEL.start()
