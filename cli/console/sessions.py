"""Console sessions: a random token per login, kept in memory with the key that logged in.

The browser holds only the token (an HttpOnly, Secure, SameSite=Strict cookie); the console keeps
its SHA-256, the access key it stands for (the background observations use the latest login's
key) and two deadlines: idle (no request for `idle` seconds) and absolute (`lifetime` after login).
At most `limit` sessions live at once (the oldest goes first), and failed logins are counted per
client address so a key cannot be guessed at speed.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

TOKEN_BYTES = 32


@dataclass
class Session:
    key_id: str
    secret: str
    created: float
    seen: float


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Sessions:
    def __init__(self, *, lifetime: float = 8 * 3600, idle: float = 30 * 60, limit: int = 64,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.lifetime = lifetime
        self.idle = idle
        self.limit = limit
        self._clock = clock
        self._by_digest: dict[bytes, Session] = {}

    def create(self, key_id: str, secret: str) -> str:
        """A new session for a key the mesh took: its token (for the cookie)."""
        self.expire()
        while len(self._by_digest) >= self.limit:
            self._by_digest.pop(next(iter(self._by_digest)))
        token = secrets.token_urlsafe(TOKEN_BYTES)
        now = self._clock()
        self._by_digest[_digest(token)] = Session(key_id, secret, now, now)
        return token

    def get(self, token: str | None) -> Session | None:
        """The live session of a cookie's token (and mark it seen), or None."""
        if not token or len(token) > 128:
            return None
        digest = _digest(token)
        session = self._by_digest.get(digest)
        if session is None:
            return None
        now = self._clock()
        if now - session.created > self.lifetime or now - session.seen > self.idle:
            del self._by_digest[digest]
            return None
        session.seen = now
        return session

    def drop(self, token: str | None) -> None:
        if token:
            self._by_digest.pop(_digest(token), None)

    def drop_key(self, key_id: str, secret: str) -> int:
        """End every session of a key the mesh no longer takes; how many ended."""
        gone = [d for d, s in self._by_digest.items() if (s.key_id, s.secret) == (key_id, secret)]
        for d in gone:
            del self._by_digest[d]
        return len(gone)

    def expire(self) -> None:
        now = self._clock()
        for digest, s in list(self._by_digest.items()):
            if now - s.created > self.lifetime or now - s.seen > self.idle:
                del self._by_digest[digest]

    def latest(self) -> Session | None:
        """The most recent live session (its key is the one observations use), or None."""
        self.expire()
        return max(self._by_digest.values(), key=lambda s: s.created, default=None)


class LoginLimiter:
    """At most `failures` failed logins per client address in `window` seconds (then 429)."""

    def __init__(self, *, failures: int = 10, window: float = 300.0, addresses: int = 4096,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = failures
        self.window = window
        self.addresses = addresses
        self._clock = clock
        self._seen: dict[str, deque[float]] = {}

    def _recent(self, address: str) -> deque[float]:
        now = self._clock()
        times = self._seen.get(address)
        if times is None:
            if len(self._seen) >= self.addresses:
                self._seen.pop(next(iter(self._seen)))
            times = self._seen[address] = deque(maxlen=self.failures)
        while times and now - times[0] > self.window:
            times.popleft()
        return times

    def blocked(self, address: str) -> bool:
        return len(self._recent(address)) >= self.failures

    def failed(self, address: str) -> None:
        self._recent(address).append(self._clock())
