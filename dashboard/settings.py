"""The dashboard's settings: `PIONEER_DASHBOARD_*` or the `dashboard:` section of the YAML config."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from pioneer_base.config import ComponentSettings, state_dir

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class DashboardSettings(ComponentSettings):
    """Where the worker's read API is, where the page is served, and who may open it.

    With `oidc_client_id` and `oidc_server_metadata_url` set (Nebari's Keycloak), the page asks for a
    login (`st.login`); `pioneer-telemetry dashboard` writes Streamlit's `[auth]` secrets from these
    settings at launch. Without them it serves on localhost only, unless `host` says otherwise.
    """

    section: ClassVar[str] = "dashboard"
    model_config = SettingsConfigDict(env_prefix="PIONEER_DASHBOARD_")

    api_url: str = "http://127.0.0.1:6066"
    """Any worker's read API (every worker answers for the whole platform)."""
    api_token: SecretStr | None = None
    """The workers' bearer token (PIONEER_WORKER_API_TOKEN); from a file: PIONEER_DASHBOARD_API_TOKEN_FILE."""
    host: str = "127.0.0.1"
    port: int = Field(default=8501, ge=1, le=65535)
    base_url_path: str = ""
    """The path the page is served under behind a proxy (e.g. "telemetry" for https://host/telemetry/)."""
    refresh_s: float = Field(default=5.0, ge=1.0)
    """Seconds between refreshes of the shown data."""
    timeout_s: float = Field(default=10.0, gt=0)
    """How long one API request may take."""
    pseudonymized: bool = False
    """The pipeline replaces usernames by keyed hashes (`parser.pseudonymize_key`): say so on the page."""

    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_server_metadata_url: str | None = None
    """e.g. https://nebari.example.org/auth/realms/nebari/.well-known/openid-configuration"""
    oidc_redirect_uri: str | None = None
    """The page's public address + /oauth2callback (default: http://<host>:<port>/oauth2callback)."""
    oidc_cookie_secret: SecretStr | None = None
    """Signs the login cookie; generated once and kept in `secrets_file` when not given."""
    oidc_scope: str = "openid profile email"
    oidc_allowed_groups: list[str] = []
    """When set, only users whose `groups` claim holds one of these may see the page (e.g. ["admin"])."""
    secrets_file: Path = state_dir() / "dashboard" / "secrets.toml"
    """Where the launcher writes Streamlit's generated `[auth]` secrets (mode 0600)."""

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_client_id and self.oidc_server_metadata_url)

    @property
    def url(self) -> str:
        host = "localhost" if self.host in ("0.0.0.0", "::") else self.host
        path = self.base_url_path.strip("/")
        return f"http://{host}:{self.port}" + (f"/{path}" if path else "")

    @property
    def redirect_uri(self) -> str:
        return self.oidc_redirect_uri or f"{self.url}/oauth2callback"
