"""Settings of the coordinator, the worker and the client, and the order in which they merge.

Merge order, later wins key by key: built-in defaults ← ``<user config dir>/mitosis/config.toml`` ←
``--config FILE`` (or ``./config.toml`` when no file is given) ← ``MITO_*`` environment ← command
line flags. Files are TOML with one table per component (``[coordinator]``, ``[worker]``,
``[client]``), as in 0.6.8. An invalid value stops start-up with one line naming the key, the value
and what is allowed (:class:`ConfigError`).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

import platformdirs
from pydantic import BeforeValidator, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from mitosis.wire.codecs import parse_duration

APP_NAME = "mitosis"


def user_config_dir() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME))


def user_data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME))


def user_cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir(APP_NAME))


def default_credential_path() -> Path:
    return user_config_dir() / "credentials"


class ConfigError(Exception):
    """A configuration value that cannot be used; the message is one line for the user."""


def _duration(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    return value


def _str_list(value: Any) -> Any:
    """Lists come as TOML arrays, comma separated strings or ``[a, b]`` strings (env)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        return [part.strip().strip("\"'") for part in text.split(",") if part.strip()]
    if isinstance(value, list | tuple):
        out: list[str] = []
        for item in value:
            out.extend(_str_list(item) if isinstance(item, str) else [str(item)])
        return out
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration)]
StrList = Annotated[list[str], NoDecode, BeforeValidator(_str_list)]


class _Settings(BaseSettings):
    """Environment is read by pydantic-settings; files and flags are layered by :func:`load`."""

    section: ClassVar[str]
    model_config = SettingsConfigDict(env_prefix="MITO_", extra="ignore", validate_default=True)


class CoordinatorSettings(_Settings):
    section: ClassVar[str] = "coordinator"

    bind: str = "127.0.0.1:5000"
    db_url: str = ""
    public_url: str = ""
    blob_store: Literal["fs", "s3"] = "fs"
    blob_dir: Path | None = None
    s3_url: str = "http://localhost:9000"
    s3_access_key: str = "mitosis_access"
    s3_secret_key: str = "mitosis_secret"
    s3_region: str = "mitosis"
    s3_force_path_style: bool = False
    artifacts_bucket: str = "mitosis-artifacts"
    attachments_bucket: str = "mitosis-attachments"
    redis_url: str | None = None
    redis_worker_password: str | None = None
    redis_client_password: str | None = None
    redis_skip_acl_rules: bool = False
    admin_user: str = Field(default="mitosis_admin", min_length=1, max_length=255)
    admin_password: str | None = Field(default=None, max_length=255)
    access_token_private_path: Path | None = None
    access_token_public_path: Path | None = None
    access_token_expires_in: Duration = timedelta(days=7)
    heartbeat_timeout: Duration = timedelta(seconds=600)
    task_timeout_grace: Duration = timedelta(seconds=60)
    reaper_interval: Duration = timedelta(seconds=5)
    max_long_poll: Duration = timedelta(seconds=60)
    # Delete archived tasks (with artifacts and events) after this many days; groups may override
    # it (groups.retention_days). Unset: keep everything, as 0.6.8 does.
    retention_days: int | None = Field(default=None, ge=0)
    retention_interval: Duration = timedelta(hours=1)
    # Event stream and live logs (our additions): how long events stay replayable by Last-Event-ID,
    # the SSE keep-alive period, the largest accepted log upload, and the per-task log bytes held
    # for readers before uploads are refused with 429.
    event_retention: Duration = timedelta(hours=1)
    event_heartbeat: Duration = timedelta(seconds=15)
    live_log_max_request: int = Field(default=1 << 20, gt=0)
    live_log_task_cap: int = Field(default=64 << 20, gt=0)
    # Hostile-input bounds (issue 8): the largest request body outside the blob paths (413 above it),
    # and login throttling: after this many failed logins for one user name (or from one address)
    # within `login_window`, logins for it are refused with 429 for `login_lockout`.
    max_request_body: int = Field(default=16 << 20, gt=0)
    # The most rows one task, attachment or worker query may answer: more matches without a `limit`
    # (or a `limit` above it) is a 400 saying how many matched and how to page.
    max_query_rows: int = Field(default=10_000, gt=0)
    # PostgreSQL connections this coordinator keeps open for reuse; under more concurrent requests
    # it opens up to half as many again, closed after each use (docs/deployment.md, connections).
    db_pool_size: int = Field(default=20, gt=0, le=1000)
    login_failures_per_user: int = Field(default=5, gt=0)
    login_failures_per_address: int = Field(default=100, gt=0)
    login_window: Duration = timedelta(minutes=15)
    login_lockout: Duration = timedelta(minutes=1)
    log_path: Path | None = None
    file_log: bool = False
    data_dir: Path = Field(default_factory=user_data_dir)

    @field_validator("bind")
    @classmethod
    def _check_bind(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:5000 or 0.0.0.0:5000")
        return v

    @field_validator("db_url")
    @classmethod
    def _check_db(cls, v: str) -> str:
        if v and not v.startswith(("sqlite://", "postgres://", "postgresql://", "postgresql+asyncpg://")):
            raise ValueError("expected sqlite:///PATH or postgresql://USER@HOST:PORT/DB")
        return v

    @property
    def bind_host(self) -> str:
        return self.bind.rpartition(":")[0].strip("[]")

    @property
    def bind_port(self) -> int:
        return int(self.bind.rpartition(":")[2])

    @property
    def effective_db_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data_dir / 'mitosis.db'}"

    @property
    def effective_public_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = self.bind_host
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.bind_port}"

    @property
    def key_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def private_key_path(self) -> Path:
        return self.access_token_private_path or self.key_dir / "private.pem"

    @property
    def public_key_path(self) -> Path:
        return self.access_token_public_path or self.key_dir / "public.pem"

    @property
    def effective_blob_dir(self) -> Path:
        return self.blob_dir or self.data_dir / "blobs"


class WorkerSettings(_Settings):
    section: ClassVar[str] = "worker"

    coordinator_addr: str = "http://127.0.0.1:5000"
    polling_interval: Duration = timedelta(minutes=3)
    heartbeat_interval: Duration = timedelta(minutes=5)
    long_poll: Duration = timedelta(seconds=30)
    credential_path: Path | None = None
    user: str | None = None
    password: str | None = None
    groups: StrList = Field(default_factory=list)
    tags: StrList = Field(default_factory=list)
    labels: StrList = Field(default_factory=list)
    log_path: Path | None = None
    file_log: bool = False
    shared_log: bool = False
    lifetime: Duration | None = None
    retain: bool = False
    skip_redis: bool = False
    work_dir: Path | None = None
    live_logs: bool = True
    """Stream captured task output to the coordinator while the task runs (``MITO_LIVE_LOGS``)."""
    batch: bool = True
    """Use the batched protocol (``POST /workers/batch``) when the coordinator has it."""
    prefetch: int = Field(default=64, ge=1, le=64)
    """Claim up to this many tasks ahead while tasks are short, and no more than about a second of
    them at their recent pace (1: never claim ahead)."""
    prefetch_short: Duration = timedelta(milliseconds=100)
    """Tasks ending faster than this are short; tasks claimed ahead go back when one runs longer."""


class ClientSettings(_Settings):
    section: ClassVar[str] = "client"

    coordinator_addr: str = "http://127.0.0.1:5000"
    credential_path: Path | None = None
    user: str | None = None
    password: str | None = None
    retain: bool = False


S = TypeVar("S", bound=_Settings)

PATH_KEYS = {
    "credential_path",
    "log_path",
    "access_token_private_path",
    "access_token_public_path",
    "blob_dir",
    "data_dir",
    "work_dir",
}


@dataclass
class Loaded(Generic[S]):
    """Merged settings plus where each explicitly set value came from (for ``mito client config``)."""

    settings: S
    sources: dict[str, str] = field(default_factory=dict)


def _read_section(path: Path, section: str) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read it: {exc.strerror}") from None
    table = data.get(section, {})
    if not isinstance(table, dict):
        raise ConfigError(f"config file {path}: [{section}] must be a table")
    # Relative paths in a file are relative to that file, as in 0.6.8.
    return {
        k: (str((path.parent / v).resolve()) if k in PATH_KEYS and isinstance(v, str) else v)
        for k, v in table.items()
    }


def load(
    model: type[S],
    *,
    config_file: Path | None = None,
    cli: dict[str, Any] | None = None,
    global_file: Path | None = None,
    flags: dict[str, str] | None = None,
) -> Loaded[S]:
    """Merge every layer for ``model`` and validate; raise :class:`ConfigError` on a bad value.

    ``flags`` maps a setting to the command-line flag that sets it (``db_url`` → ``--db``), so an
    error in a value given on the command line names the flag the user typed.
    """
    layers: list[tuple[str, dict[str, Any]]] = []
    gfile = global_file if global_file is not None else user_config_dir() / "config.toml"
    if gfile.is_file():
        layers.append((str(gfile), _read_section(gfile, model.section)))
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError(f"--config {config_file}: no such file")
        layers.append((str(config_file), _read_section(config_file, model.section)))
    elif Path("config.toml").is_file():
        layers.append(("./config.toml", _read_section(Path("config.toml"), model.section)))

    known = set(model.model_fields)
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for origin, values in layers:
        for key, value in values.items():
            if key in known:
                merged[key] = value
                sources[key] = origin
    env_keys = {k for k in known if f"MITO_{k.upper()}" in os.environ}
    for key in env_keys:
        merged.pop(key, None)  # the environment outranks files: let pydantic-settings read it
        sources[key] = f"env MITO_{key.upper()}"
    for key, value in (cli or {}).items():
        if value is None or key not in known:
            continue
        merged[key] = value
        sources[key] = "command line"
    try:
        settings = model(**merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "?"
        value = err.get("input")
        top = key.split(".")[0]
        origin = sources.get(top, "default")
        if origin == "command line" and flags and top in flags:
            origin = f"command line {flags[top]}"
        # pydantic prefixes the messages of custom validators with "Value error, ".
        reason = str(err["msg"]).removeprefix("Value error, ")
        raise ConfigError(
            f"invalid value for {model.section}.{key} ({origin}): {value!r}: {reason}"
        ) from None
    return Loaded(settings, sources)
