"""The collector's settings: `PIONEER_COLLECTOR_*` or the `collector:` YAML section."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from pioneer_base.config import ComponentSettings, state_dir


class CollectorSettings(ComponentSettings):
    section: ClassVar[str] = "collector"
    model_config = SettingsConfigDict(env_prefix="PIONEER_COLLECTOR_")

    # sources
    paths: list[str] = []  # globs, e.g. /var/log/containers/*.log
    start_at: Literal["beginning", "end"] = "end"  # for files present at the very first start
    forward_port: int | None = None  # Fluent forward protocol server (24224 is the usual port)
    forward_host: str = "127.0.0.1"  # without forward_shared_key, always 127.0.0.1
    forward_shared_key: SecretStr | None = None  # Fluent Bit's Shared_Key (secure-forward handshake)
    forward_username: str | None = None  # with forward_password: user authentication too
    forward_password: SecretStr | None = None
    forward_hostname: str = socket.gethostname()  # ours, in the handshake's PONG
    forward_tls_certfile: Path | None = None  # with forward_tls_keyfile: TLS only, plain TCP refused
    forward_tls_keyfile: Path | None = None
    forward_max_connections: int = 100
    forward_idle_timeout_s: float = 300.0
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

    @model_validator(mode="after")
    def _forward_security_complete(self) -> CollectorSettings:
        if (self.forward_username is None) != (self.forward_password is None):
            raise ValueError("forward user authentication needs both forward_username and forward_password")
        if self.forward_username is not None and self.forward_shared_key is None:
            raise ValueError("forward user authentication is part of the handshake: set forward_shared_key")
        if (self.forward_tls_certfile is None) != (self.forward_tls_keyfile is None):
            raise ValueError("forward TLS needs both forward_tls_certfile and forward_tls_keyfile")
        return self

    @property
    def forward_bind_host(self) -> str:
        """Where the forward server listens: nowhere but loopback while it has no key to ask for."""
        return self.forward_host if self.forward_shared_key is not None else "127.0.0.1"

    def forward_tls(self) -> ssl.SSLContext | None:
        if self.forward_tls_certfile is None or self.forward_tls_keyfile is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.forward_tls_certfile, self.forward_tls_keyfile)
        return context
