"""The one place Casebook reads its settings: `CASEBOOK_*` environment variables.

Secrets never print: the SMTP password and the billing token are `SecretStr` (read them
with `.get_secret_value()` where they are sent), and the database URL, which may carry a
password, is a plain string left out of the settings' repr and dumps; never log it (an
SQLAlchemy engine's repr masks its password).
"""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob the API, the worker and the CLI share; each maps to `CASEBOOK_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="CASEBOOK_", extra="ignore")

    data_dir: Path = Path(".casebook")
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL; default: SQLite file in the data directory",
        repr=False,  # may carry a password
        exclude=True,
    )
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    task_queue: str = "casebook-cases"
    smtp_host: str = "localhost"
    smtp_port: int = 1025
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_use_tls: bool = False
    mail_from: str = "casebook@localhost"
    billing_url: str = Field(
        default="http://127.0.0.1:8001", description="the billing system's REST gateway"
    )
    billing_token: SecretStr = Field(
        default=SecretStr(""), description="bearer token for the billing gateway"
    )
    intake_check: Literal["billing", "off"] = Field(
        default="billing",
        description="`billing`: a new case's customer and invoices are checked with billing "
        "and its master data fills what the request leaves out; `off`: the request is taken "
        "as it is (a billing system without master data)",
    )
    archive_dir: Path | None = Field(
        default=None,
        description="also keep each archived history as a file here (e.g. a WORM mount)",
    )
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    public_url: str = Field(default="", description="Base URL used in links inside emails")
    update_timeout_seconds: float = 10.0
    worker_metrics_address: str = Field(
        default="",
        description="host:port where a worker serves Temporal SDK metrics to Prometheus "
        "(`/metrics`); empty: not served",
    )
    vendorless_cases: Literal["deny", "shared"] = Field(
        default="deny",
        description="cases with no vendor: `deny` shows them only to users not bound to a "
        "vendor (leads without one, cross-vendor agents, admins, auditors); `shared` to "
        "every vendor's users too (docs/SECURITY.md)",
    )

    def resolved_database_url(self) -> str:
        """The configured URL, or a SQLite file inside the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'casebook.db').resolve()}"

    def resolved_public_url(self) -> str:
        return self.public_url or f"http://{self.api_host}:{self.api_port}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
