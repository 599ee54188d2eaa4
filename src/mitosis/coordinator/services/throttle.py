"""Login throttling: refuse logins for a user name or from an address after repeated failures.

Failed logins are counted per user name (existing or not, so the answer never tells whether a
user exists) and per client address, within a sliding window. Once a key holds ``limit`` failures
in the window, logins for it are refused with 429 until ``lockout`` after its latest failure, and
every further failure (after the lockout ends) locks it again at once. A successful login clears
the user name's count, never the address's (one's own account must not reset an attacker's count).

The counts live in this coordinator's memory: with several coordinators behind a load balancer
each enforces its own limits, so an attacker gets at most ``limit`` tries per coordinator per
window. That is documented in docs/reliability.md; the database stays the source of truth for
everything that decides who runs what.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from starlette.exceptions import HTTPException

_MAX_KEYS = 100_000


@dataclass
class _Counter:
    limit: int
    window: float
    lockout: float
    failures: dict[str, deque[float]] = field(default_factory=dict)

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until ``key`` may try again (0 when it may now)."""
        seen = self.failures.get(key)
        if not seen:
            return 0.0
        while seen and seen[0] <= now - self.window:
            seen.popleft()
        if not seen:
            del self.failures[key]
            return 0.0
        if len(seen) < self.limit:
            return 0.0
        return max(0.0, seen[-1] + self.lockout - now)

    def fail(self, key: str, now: float) -> None:
        if len(self.failures) >= _MAX_KEYS:
            self._prune(now)
        seen = self.failures.setdefault(key, deque(maxlen=self.limit))
        seen.append(now)

    def clear(self, key: str) -> None:
        self.failures.pop(key, None)

    def _prune(self, now: float) -> None:
        for key in [k for k, v in self.failures.items() if not v or v[-1] <= now - self.window]:
            del self.failures[key]
        if len(self.failures) >= _MAX_KEYS:
            # Still full of fresh keys (a spray from many addresses): forget the oldest half.
            for key in sorted(self.failures, key=lambda k: self.failures[k][-1])[: _MAX_KEYS // 2]:
                del self.failures[key]


class LoginThrottle:
    """Per-user and per-address failure counters of one coordinator process."""

    def __init__(
        self,
        per_user: int,
        per_address: int,
        window: timedelta,
        lockout: timedelta,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        w, lock = window.total_seconds(), lockout.total_seconds()
        self._users = _Counter(per_user, w, lock)
        self._addresses = _Counter(per_address, w, lock)
        self._clock = clock

    def check(self, username: str, address: str | None) -> None:
        """Raise a 429 (with ``Retry-After``) when this user name or address is locked out."""
        now = self._clock()
        wait = self._users.retry_after(username, now)
        who = f"user {username!r}"
        if address is not None:
            by_address = self._addresses.retry_after(address, now)
            if by_address > wait:
                wait, who = by_address, f"address {address}"
        if wait <= 0:
            return
        seconds = math.ceil(wait)
        at = (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%H:%M:%S UTC")
        raise HTTPException(
            429,
            detail=f"Too many failed logins for {who}: try again in {seconds} s (after {at})",
            headers={"Retry-After": str(seconds)},
        )

    def failed(self, username: str, address: str | None) -> None:
        now = self._clock()
        self._users.fail(username, now)
        if address is not None:
            self._addresses.fail(address, now)

    def succeeded(self, username: str) -> None:
        self._users.clear(username)
