"""The collector's settings: `PIONEER_COLLECTOR_*` or the `collector:` YAML section."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic_settings import SettingsConfigDict

from pioneer_telemetry.config import ComponentSettings, state_dir


class CollectorSettings(ComponentSettings):
    section: ClassVar[str] = "collector"
    model_config = SettingsConfigDict(env_prefix="PIONEER_COLLECTOR_")

    # sources
    paths: list[str] = []  # globs, e.g. /var/log/containers/*.log
    start_at: Literal["beginning", "end"] = "end"  # for files present at the very first start
    forward_port: int | None = None  # Fluent forward protocol server (24224 is the usual port)
    forward_host: str = "127.0.0.1"
    # which pods: Nebari's user pods by default; empty lists accept all
    namespaces: list[str] = ["dev"]
    pod_glob: str = "jupyter-*"
    containers: list[str] = ["notebook"]
    forward_all: bool = False  # also forward lines that cannot be pioneer events
    max_line_bytes: int = 8 * 1024 * 1024  # longer lines are cut; the parser dead-letters them
    # delivery
    checkpoint_file: Path = state_dir() / "collector" / "positions.json"
    buffer_bytes: int = 16 * 1024 * 1024  # unacknowledged envelope bytes before sources stop reading
    batch_bytes: int = 512 * 1024
    record_lines: int = 100  # lines of one source per Kafka record (a JSON array); 1: one bare envelope each
    linger_ms: int = 50
    compression: Literal["zstd", "lz4", "gzip", "none"] = (
        "zstd"  # aiokafka compresses lz4 at level 9 (HC): 4x slower
    )
    # operations
    poll_interval_s: float = 0.25
    rotate_wait_s: float = 5.0
    status_interval_s: float = 30.0
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
