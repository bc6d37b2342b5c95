"""Settings plumbing shared by every component.

Each component owns one settings model derived from `ComponentSettings`. Values come from, in order:
keyword arguments (CLI flags), environment variables (`PIONEER_<SECTION>_<FIELD>`), and the section
`<section>:` of the YAML file named by `PIONEER_CONFIG`. Defaults work locally with zero config.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from pydantic import AliasChoices, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

CONFIG_FILE_ENV = "PIONEER_CONFIG"


def state_dir() -> Path:
    """Where local runtime state (broker data, checkpoints) lives unless a component is told otherwise."""
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "pioneer-telemetry"


def cache_dir() -> Path:
    """Where downloaded artifacts (Kafka jars) are cached between runs."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pioneer-telemetry"


class ComponentSettings(BaseSettings):
    """Base for per-component settings: env vars with the component's prefix, then its YAML section."""

    section: ClassVar[str] = ""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_FILE_ENV)
        if config_file:
            if not Path(config_file).is_file():
                raise FileNotFoundError(f"{CONFIG_FILE_ENV}={config_file} does not name a readable file")
            sources.append(
                YamlConfigSettingsSource(settings_cls, yaml_file=config_file, yaml_config_section=cls.section)
            )
        return tuple(sources)


class KafkaSettings(ComponentSettings):
    """How every component reaches Kafka. `KAFKA_BOOTSTRAP_SERVERS` wins, so one variable points all at a cluster."""

    section: ClassVar[str] = "kafka"
    model_config = SettingsConfigDict(env_prefix="PIONEER_KAFKA_")

    bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices(
            "KAFKA_BOOTSTRAP_SERVERS", "PIONEER_KAFKA_BOOTSTRAP_SERVERS", "bootstrap_servers"
        ),
    )
    client_id: str = "pioneer-telemetry"

    @property
    def external(self) -> bool:
        """True when the user pointed us at an existing cluster instead of the local broker."""
        return bool(
            os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or os.environ.get("PIONEER_KAFKA_BOOTSTRAP_SERVERS")
        )
