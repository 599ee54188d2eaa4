"""Everything a request handler or background loop of one coordinator process shares."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from mitosis.config import CoordinatorSettings
from mitosis.coordinator.auth import TokenService
from mitosis.coordinator.blobs import BlobStore
from mitosis.coordinator.events.notifier import Notifier
from mitosis.coordinator.services.throttle import LoginThrottle


@dataclass
class Context:
    settings: CoordinatorSettings
    engine: AsyncEngine
    tokens: TokenService
    blobs: BlobStore
    notifier: Notifier
    shutdown_secret: str
    redis_worker_url: str | None = None
    redis_client_url: str | None = None
    stats: dict[str, int] = field(default_factory=dict)
    login_throttle: LoginThrottle | None = None

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"
