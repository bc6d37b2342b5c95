"""Parser settings: `PIONEER_PARSER_*` environment variables or the `parser:` section of the YAML config."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import PositiveInt, SecretStr
from pydantic_settings import SettingsConfigDict

from pioneer_base.config import ComponentSettings
from streams.logformat import NEBARI_DEFAULT_LOG_FORMAT, log_format_from_nebari_config
from streams.privacy import DEFAULT_ENVIRON_ALLOWLIST, PrivacyPolicy


class ParserSettings(ComponentSettings):
    section: ClassVar[str] = "parser"
    model_config = SettingsConfigDict(env_prefix="PIONEER_PARSER_")

    log_format: str | None = None
    """The exporter's logging format; None: the nebari-config.yml's, else Nebari's default."""
    nebari_config: Path | None = None
    """A nebari-config.yml to read `telemetry.jupyterlab_pioneer.log_format` from."""
    capture_content: bool = False
    """Keep user content (cell text, keystrokes, clipboard, error messages, notebooks) in events."""
    environ_allowlist: frozenset[str] = DEFAULT_ENVIRON_ALLOWLIST
    """The NotebookOpenEvent environment variables that are kept (secret-looking ones never are)."""
    pseudonymize_key: SecretStr | None = None
    """When set, usernames and pod names are replaced by keyed hashes (HMAC-SHA256)."""
    max_line_bytes: PositiveInt = 8 * 1024 * 1024
    """Longer lines become dead letters: the bound on memory per stream."""

    def effective_log_format(self) -> str:
        if self.log_format:
            return self.log_format
        if self.nebari_config is not None:
            return log_format_from_nebari_config(self.nebari_config) or NEBARI_DEFAULT_LOG_FORMAT
        return NEBARI_DEFAULT_LOG_FORMAT

    def privacy_policy(self) -> PrivacyPolicy:
        return PrivacyPolicy(capture_content=self.capture_content, environ_allowlist=self.environ_allowlist)
