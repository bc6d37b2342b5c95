"""Settings plumbing shared by every component.

Each component owns one settings model derived from `ComponentSettings`. Values come from, in order:
keyword arguments (CLI flags), environment variables (`PIONEER_<SECTION>_<FIELD>`), files named by
`PIONEER_<SECTION>_<FIELD>_FILE` (how Kubernetes mounts Secrets), and the section `<section>:` of the YAML
file named by `PIONEER_CONFIG`. Defaults work locally with zero config.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic.fields import FieldInfo
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


class FileEnvSettingsSource(PydanticBaseSettingsSource):
    """`<PREFIX><FIELD>_FILE=/path`: the field's value is the file's content (one trailing newline off)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        prefix = self.settings_cls.model_config.get("env_prefix", "")
        variable = f"{prefix}{field_name}_FILE".upper()
        path = os.environ.get(variable)
        if not path:
            return None, field_name, False
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise ValueError(f"{variable}={path}: cannot read it ({error.strerror})") from None
        return text.removesuffix("\n"), field_name, False

    def __call__(self) -> dict[str, Any]:
        values = {}
        for name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                values[key] = value
        return values


class ComponentSettings(BaseSettings):
    """Base for per-component settings: env vars with the component's prefix, then its YAML section."""

    section: ClassVar[str] = ""

    # errors never echo the input: it may hold passwords and tokens
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, hide_input_in_errors=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [
            init_settings,
            env_settings,
            FileEnvSettingsSource(settings_cls),
        ]
        config_file = os.environ.get(CONFIG_FILE_ENV)
        if config_file:
            if not Path(config_file).is_file():
                raise FileNotFoundError(f"{CONFIG_FILE_ENV}={config_file} does not name a readable file")
            sources.append(
                YamlConfigSettingsSource(settings_cls, yaml_file=config_file, yaml_config_section=cls.section)
            )
        return tuple(sources)


SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSettings(ComponentSettings):
    """How every component reaches Kafka, the one model for all of them. `KAFKA_BOOTSTRAP_SERVERS` wins,
    so one variable points all at a cluster; `pioneer-telemetry kafka start --secure` writes the rest into
    `<data dir>/client.env`."""

    section: ClassVar[str] = "kafka"
    model_config = SettingsConfigDict(env_prefix="PIONEER_KAFKA_")

    bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices(
            "KAFKA_BOOTSTRAP_SERVERS", "PIONEER_KAFKA_BOOTSTRAP_SERVERS", "bootstrap_servers"
        ),
    )
    client_id: str = "pioneer-telemetry"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None  # None: the system's trusted CAs
    ssl_certfile: Path | None = None  # with ssl_keyfile: a client certificate (mutual TLS)
    ssl_keyfile: Path | None = None
    ssl_key_password: SecretStr | None = None

    @model_validator(mode="after")
    def _complete(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL_"):
            missing = [
                f"PIONEER_KAFKA_{name.upper()}"
                for name in ("sasl_mechanism", "sasl_username", "sasl_password")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"security_protocol {self.security_protocol} needs {', '.join(missing)}")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("a client certificate needs both ssl_certfile and ssl_keyfile")
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name} {path} is not a readable file")
        return self

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of every client: the CA to trust and, for mutual TLS, our certificate."""
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(cafile=str(self.ssl_cafile) if self.ssl_cafile else None)
        if self.ssl_certfile is not None and self.ssl_keyfile is not None:
            password = self.ssl_key_password.get_secret_value() if self.ssl_key_password else None
            context.load_cert_chain(str(self.ssl_certfile), str(self.ssl_keyfile), password)
        return context

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for any aiokafka client (producer, consumer, admin): where and how to connect."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.uses_tls:
            options["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            assert self.sasl_password is not None  # checked by _complete
            options |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password.get_secret_value(),
            }
        return options

    @property
    def external(self) -> bool:
        """True when the user pointed us at an existing cluster instead of the local broker."""
        return bool(
            os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or os.environ.get("PIONEER_KAFKA_BOOTSTRAP_SERVERS")
        )
