"""Redis as 0.6.8 uses it (behavior.md §8): the two ACL users and the URLs handed out.

The coordinator never reads or writes task keys; workers announce exec states on ``task:<uuid>`` and
clients read them. Our coordinator only:

* picks the worker and client passwords: configured ones, else passwords generated once (``ACL
  GENPASS``, or the same 256 random bits locally when Redis is down) and kept in
  ``<data_dir>/redis-passwords.json`` (mode 0600), so a restart does not invalidate the URLs that
  registered workers already hold (behavior.md Q11);
* unless ``redis_skip_acl_rules``, sets the ACL users ``mitosis_worker`` and ``mitosis_client``
  exactly as §8.1, and sets them again whenever it reconnects or Redis restarted (a restarted
  Redis without an ACL file has forgotten them);
* hands out URLs that keep the configured scheme (``rediss://`` for TLS) and DB index (Q11 fixed).

Redis is optional: when it is unreachable the coordinator serves on, logs that once per outage, and
retries in the background with a capped exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import redis.asyncio as aioredis

log = logging.getLogger(__name__)

WORKER_USER = "mitosis_worker"
CLIENT_USER = "mitosis_client"
WORKER_RULES = ("on", "~task:*", "&task:*", "+@read", "+@write", "+@connection", "+@pubsub", "-@dangerous")
CLIENT_RULES = ("on", "~task:*", "&task:*", "+@read", "+@pubsub", "+@connection", "-@dangerous")
PASSWORD_FILE = "redis-passwords.json"
# How often a connected coordinator checks that Redis is still there and is the same server.
CHECK_INTERVAL = 2.0
MAX_BACKOFF = 5.0


def handed_out_url(redis_url: str, user: str, password: str) -> str:
    """The URL for ``user``: host, port, scheme and DB index of ``redis_url``, RESP3 as in 0.6.8."""
    parts = urlsplit(redis_url)
    scheme = "rediss" if parts.scheme == "rediss" else "redis"
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    port = parts.port or 6379
    db = parts.path.strip("/")
    if not db:
        db = parse_qs(parts.query).get("db", [""])[0]
    return f"{scheme}://{user}:{quote(password, safe='')}@{host}:{port}/{db}?protocol=resp3"


def _read_saved(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str) and v}


def _write_saved(path: Path, data: dict[str, str]) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


class RedisAcl:
    """Owns the coordinator's Redis connection: ACL set-up, URLs, and reconnection."""

    def __init__(
        self,
        url: str,
        data_dir: Path,
        worker_password: str | None,
        client_password: str | None,
        skip_acl_rules: bool,
    ) -> None:
        self.url = url
        self._data_dir = data_dir
        self._configured = {"worker": worker_password, "client": client_password}
        self._skip_acl = skip_acl_rules
        self.worker_password = ""
        self.client_password = ""
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def worker_url(self) -> str:
        return handed_out_url(self.url, WORKER_USER, self.worker_password)

    @property
    def client_url(self) -> str:
        return handed_out_url(self.url, CLIENT_USER, self.client_password)

    async def start(self) -> None:
        """Settle the passwords (so the URLs are known at once) and start the connection loop."""
        await self._settle_passwords()
        self._task = asyncio.create_task(self._run(), name="redis-acl")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def _client(self) -> Any:
        return aioredis.from_url(self.url, socket_connect_timeout=2, socket_timeout=5)

    async def _genpass(self) -> str:
        client = self._client()
        try:
            return str(await asyncio.wait_for(client.execute_command("ACL", "GENPASS"), 3)).strip()
        except Exception:
            # Same 256 random bits GENPASS would give; Redis being down must not stop start-up.
            return secrets.token_hex(32)
        finally:
            with contextlib.suppress(Exception):
                await client.aclose()

    async def _settle_passwords(self) -> None:
        path = self._data_dir / PASSWORD_FILE
        saved = _read_saved(path)
        chosen: dict[str, str] = {}
        changed = False
        for role in ("worker", "client"):
            configured = self._configured[role]
            if configured:
                chosen[role] = configured
            elif role in saved:
                chosen[role] = saved[role]
            else:
                chosen[role] = saved[role] = await self._genpass()
                changed = True
        if changed:
            self._data_dir.mkdir(parents=True, exist_ok=True)
            _write_saved(path, saved)
            log.info("generated Redis passwords for %s and %s (kept in %s)", WORKER_USER, CLIENT_USER, path)
        self.worker_password = chosen["worker"]
        self.client_password = chosen["client"]

    async def _apply_acl(self, client: Any) -> None:
        # One SETUSER per user ("reset" first, as §8.1) so no moment exists with the user half set.
        await client.execute_command(
            "ACL", "SETUSER", WORKER_USER, "reset", f">{self.worker_password}", *WORKER_RULES
        )
        await client.execute_command(
            "ACL", "SETUSER", CLIENT_USER, "reset", f">{self.client_password}", *CLIENT_RULES
        )

    async def _run(self) -> None:
        delay = 0.5
        down_logged = False
        while True:
            client = self._client()
            try:
                run_id = await self._server_id(client)
                if not self._skip_acl:
                    await self._apply_acl(client)
                log.info(
                    "Redis %s at %s%s",
                    "is back" if down_logged else "connected",
                    _safe(self.url),
                    "" if self._skip_acl else f"; ACL users {WORKER_USER} and {CLIENT_USER} set",
                )
                self.connected.set()
                down_logged = False
                delay = 0.5
                while True:
                    await asyncio.sleep(CHECK_INTERVAL)
                    current = await self._server_id(client)
                    if current != run_id:
                        # A restarted Redis (without an ACL file) has forgotten our users.
                        log.info("Redis at %s restarted; setting the ACL users again", _safe(self.url))
                        run_id = current
                        if not self._skip_acl:
                            await self._apply_acl(client)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected.clear()
                if not down_logged:
                    log.warning(
                        "Redis at %s is unreachable (%s): the coordinator works on without it "
                        "(no exec-state announcements reach clients) and reconnects when it is back",
                        _safe(self.url),
                        exc,
                    )
                    down_logged = True
            finally:
                with contextlib.suppress(Exception):
                    await client.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF)

    @staticmethod
    async def _server_id(client: Any) -> str:
        info = await client.info("server")
        return str(info.get("run_id", ""))


def _safe(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    return f"{parts.scheme}://{host}:{parts.port or 6379}{parts.path}"


async def start_redis(
    url: str | None,
    data_dir: Path,
    worker_password: str | None,
    client_password: str | None,
    skip_acl_rules: bool,
) -> RedisAcl | None:
    """The running Redis manager, or None (logged once) when no ``redis_url`` is configured."""
    if not url:
        log.info(
            "Redis not configured: GET /redis answers null and workers run without exec-state announcements"
        )
        return None
    acl = RedisAcl(url, data_dir, worker_password, client_password, skip_acl_rules)
    await acl.start()
    return acl
