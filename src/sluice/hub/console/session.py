"""Console sign-in sessions: a signed, expiring cookie that maps to the ``Principal`` of the key used to sign in.

Why server-side sessions behind a signed cookie: the cookie carries only a random session id, its expiry and an
HMAC over both (keyed by a secret drawn fresh in each process), so a forged or edited cookie is refused before any
lookup, and a hub restart signs everybody out (the secret and the table are gone with the process). The table
maps the id to the ``Principal`` that ``Authenticator.login`` returned, so the console asks the same object the
API asks about access, and logging out really ends the session (a stateless token would stay valid until it
expired). No I/O, no clock of its own: callers pass ``now`` (wall-clock seconds).

Bounds (issue #17 item 11): each key holds at most ``MAX_SESSIONS_PER_KEY`` live sessions, and a new one evicts
only the oldest of the *same* key, so signing in in a loop never signs anybody else out (keys are fixed at
start, so the table is bounded by keys x that figure). Cookies that are not short ASCII text are refused before
any parsing (a non-ASCII cookie used to raise inside ``hmac.compare_digest``: a 500 and a traceback per request).
Failed sign-ins are throttled per key and per address by :class:`SignInThrottle`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field

from ..auth import Principal

__all__ = ["COOKIE_NAME", "DEFAULT_SESSION_TTL", "MAX_SESSIONS_PER_KEY", "Session", "SessionStore", "SignInThrottle"]

COOKIE_NAME = "sluice_console"
DEFAULT_SESSION_TTL = 8 * 3600.0  # a working day; then sign in again
MAX_SESSIONS_PER_KEY = 100  # browsers and people sharing one key; the 101st sign-in ends that key's oldest session
_MAX_COOKIE = 200


@dataclass(frozen=True)
class Session:
    sid: str
    principal: Principal
    expires: float


class SessionStore:
    """Issues, checks and ends console sessions."""

    def __init__(self, ttl: float = DEFAULT_SESSION_TTL, secret: bytes | None = None) -> None:
        self.ttl = ttl
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self._sessions: dict[str, Session] = {}
        self._by_key: dict[str | None, dict[str, None]] = {}  # key id -> its session ids, oldest first

    def _mac(self, sid: str, expires: int) -> str:
        return hmac.new(self._secret, f"{sid}.{expires}".encode(), hashlib.sha256).hexdigest()

    def create(self, principal: Principal, now: float) -> tuple[str, Session]:
        """A new session; returns the cookie value and the session."""
        self._prune(now)
        mine = self._by_key.setdefault(principal.key_id, {})
        while len(mine) >= MAX_SESSIONS_PER_KEY:  # still full of this key's live sessions: drop its oldest
            self._remove(next(iter(mine)))
        sid = secrets.token_urlsafe(18)
        # never longer than the key itself (keys are read once at start, so they change only with a restart,
        # which ends every session anyway)
        expires = int(min(now + self.ttl, principal.expires if principal.expires is not None else now + self.ttl))
        session = Session(sid, principal, expires)
        self._sessions[sid] = session
        mine[sid] = None
        return f"{sid}.{expires}.{self._mac(sid, expires)}", session

    def get(self, cookie: str | None, now: float) -> Session | None:
        """The live session a cookie value names, or None (missing, malformed, forged, expired or ended)."""
        if not cookie or len(cookie) > _MAX_COOKIE or not cookie.isascii():
            return None
        sid, sep, rest = cookie.partition(".")
        expires_text, sep2, mac = rest.partition(".")
        if not sep or not sep2 or not expires_text.isdigit():
            return None
        expires = int(expires_text)
        if not hmac.compare_digest(mac, self._mac(sid, expires)):
            return None
        session = self._sessions.get(sid)
        if session is None or session.expires != expires or expires <= now:
            return None
        return session

    def end(self, cookie: str | None, now: float) -> None:
        session = self.get(cookie, now)
        if session is not None:
            self._remove(session.sid)

    def count(self, key_id: str | None = None) -> int:
        """Live-or-not-yet-pruned sessions, of one key or in all."""
        return len(self._sessions) if key_id is None else len(self._by_key.get(key_id, ()))

    def _remove(self, sid: str) -> None:
        session = self._sessions.pop(sid, None)
        if session is None:
            return
        mine = self._by_key.get(session.principal.key_id)
        if mine is not None:
            mine.pop(sid, None)
            if not mine:
                del self._by_key[session.principal.key_id]

    def _prune(self, now: float) -> None:
        for sid in [sid for sid, s in self._sessions.items() if s.expires <= now]:
            self._remove(sid)


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class SignInThrottle:
    """Failed console sign-ins, throttled per key id and per client address with token buckets.

    Why buckets and not a lock-out: a lock-out after N failures lets anyone lock a real user out; a bucket lets
    a burst of typos through (``burst`` failures), then one attempt per ``interval`` seconds, so guessing a
    secret at the measured ~1,600 tries/s becomes one try every few seconds per key and per address, while the
    key's owner still gets in. A sign-in is refused while either bucket is empty, before the secret is checked.
    Only failures spend tokens. Tables are bounded (``max_entries``, least recently used dropped first); key ids
    that do not exist share one bucket, so made-up ids cannot grow the table.
    """

    key_burst: int = 10
    key_interval: float = 3.0
    address_burst: int = 20
    address_interval: float = 1.0
    max_entries: int = 10_000
    _keys: OrderedDict[str, _Bucket] = field(default_factory=OrderedDict)
    _addresses: OrderedDict[str, _Bucket] = field(default_factory=OrderedDict)

    def retry_after(self, key: str, address: str, now: float) -> float:
        """0 if a sign-in for ``key`` (a known key id, or "" for unknown ones) from ``address`` may be tried now,
        else the seconds until it may."""
        wait_key = self._wait(self._keys, key, self.key_burst, self.key_interval, now)
        wait_addr = self._wait(self._addresses, address, self.address_burst, self.address_interval, now)
        return max(wait_key, wait_addr)

    def failed(self, key: str, address: str, now: float) -> None:
        self._spend(self._keys, key, self.key_burst, self.key_interval, now)
        self._spend(self._addresses, address, self.address_burst, self.address_interval, now)

    def _bucket(self, table: OrderedDict[str, _Bucket], name: str, burst: int, interval: float,
                now: float) -> _Bucket:
        bucket = table.get(name)
        if bucket is None:
            bucket = table[name] = _Bucket(float(burst), now)
            while len(table) > self.max_entries:
                table.popitem(last=False)
        else:
            table.move_to_end(name)
            bucket.tokens = min(float(burst), bucket.tokens + max(0.0, now - bucket.at) / interval)
            bucket.at = now
        return bucket

    def _wait(self, table: OrderedDict[str, _Bucket], name: str, burst: int, interval: float, now: float) -> float:
        if name not in table:
            return 0.0
        bucket = self._bucket(table, name, burst, interval, now)
        return 0.0 if bucket.tokens >= 1.0 else (1.0 - bucket.tokens) * interval

    def _spend(self, table: OrderedDict[str, _Bucket], name: str, burst: int, interval: float, now: float) -> None:
        bucket = self._bucket(table, name, burst, interval, now)
        bucket.tokens = max(0.0, bucket.tokens - 1.0)
