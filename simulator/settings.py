"""The simulator's settings (`PIONEER_SIMULATOR_*` or the `simulator:` YAML section): who is simulated, for
how long, how fast, and how their pods' logs look."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from enum import StrEnum
from typing import ClassVar

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from pioneer_base.config import ComponentSettings
from streams.framing import Framing

DEFAULT_LOG_FORMAT = "%(asctime)s %(levelname)9s %(lineno)4s %(module)s: %(message)s"


class Exporter(StrEnum):
    """How jupyterlab-pioneer writes events into the pod log."""

    LOGGING = "logging"  # Nebari's: logger.info(json.dumps(event)) under `log_format`, on stderr
    COMMAND_LINE = "command_line"  # the built-in command_line_exporter: print(event), a dict repr


class SimulatorSettings(ComponentSettings):
    """Who is simulated, for how long, how fast, and how their pods' logs look (`PIONEER_SIMULATOR_*`)."""

    section: ClassVar[str] = "simulator"
    model_config = SettingsConfigDict(env_prefix="PIONEER_SIMULATOR_")

    users: int = Field(default=5, ge=1, description="Simulated users, one single-user pod each.")
    seed: int = Field(default=0, description="Same seed and start time, same output.")
    start: datetime | None = Field(default=None, description="Simulated start time (default: now).")
    rate: float = Field(default=0.0, ge=0, description="Pioneer events per wall-clock second; 0 = unpaced.")
    realtime: bool = Field(
        default=False,
        description="Write each line when its simulated time comes (a live demo; not with rate).",
    )
    duration: float | None = Field(default=None, gt=0, description="Seconds of simulated time.")
    events: int | None = Field(default=None, ge=1, description="Stop after this many pioneer events.")
    log_format: str = Field(
        default=DEFAULT_LOG_FORMAT, description="Nebari's `jupyterlab_pioneer.log_format`."
    )
    framing: Framing = Field(default=Framing.CRI, description="How the container runtime stores lines.")
    exporter: Exporter = Field(
        default=Exporter.LOGGING,
        description="Nebari's logging exporter (`log_format`), or jupyterlab-pioneer's command_line_exporter "
        "(each event's dict repr, printed: timed by the container runtime only).",
    )
    clock_skew_ms: int = Field(
        default=300, ge=0, description="Largest browser clock offset from the server's."
    )
    office_hours: bool = Field(default=False, description="Weight activity by hour of day and weekday.")
    sessions_per_week: float | None = Field(
        default=None,
        gt=0,
        description="A course's rhythm: on average this many working blocks per user and week, instead of "
        "working all day (a term in a few hundred thousand events).",
    )
    namespace: str = Field(default="dev", description="Kubernetes namespace of the user pods.")
    truth_interval: float = Field(
        default=10.0, gt=0, description="Wall-clock seconds between truth rewrites."
    )

    @field_validator("start")
    @classmethod
    def _utc(cls, start: datetime | None) -> datetime | None:
        return start.replace(tzinfo=UTC) if start is not None and start.tzinfo is None else start

    @model_validator(mode="after")
    def _one_pace(self) -> SimulatorSettings:
        if self.realtime and self.rate:
            raise ValueError("realtime and rate are two ways of pacing: choose one")
        return self

    @model_validator(mode="after")
    def _timed(self) -> SimulatorSettings:
        if self.exporter == Exporter.COMMAND_LINE and self.framing == Framing.PLAIN:
            raise ValueError("command_line_exporter lines carry no time: frame them as cri or docker")
        return self

    @field_validator("log_format")
    @classmethod
    def _has_message(cls, log_format: str) -> str:
        logging.Formatter(log_format)  # raises ValueError for a malformed format
        if "%(message)" not in log_format:
            raise ValueError("log_format must contain %(message)s, or the events are not logged")
        return log_format
