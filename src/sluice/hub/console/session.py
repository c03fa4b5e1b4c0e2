"""Console sign-in sessions: a signed, expiring cookie that maps to the ``Principal`` of the key used to sign in.

Why server-side sessions behind a signed cookie: the cookie carries only a random session id, its expiry and an
HMAC over both (keyed by a secret drawn fresh in each process), so a forged or edited cookie is refused before any
lookup, and a hub restart signs everybody out (the secret and the table are gone with the process). The table
maps the id to the ``Principal`` that ``Authenticator.login`` returned, so the console asks the same object the
API asks about access, and logging out really ends the session (a stateless token would stay valid until it
expired). No I/O, no clock of its own: callers pass ``now`` (wall-clock seconds).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from ..auth import Principal

__all__ = ["COOKIE_NAME", "DEFAULT_SESSION_TTL", "Session", "SessionStore"]

COOKIE_NAME = "sluice_console"
DEFAULT_SESSION_TTL = 8 * 3600.0  # a working day; then sign in again
_MAX_SESSIONS = 10_000  # a bound on memory if someone signs in in a loop


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

    def _mac(self, sid: str, expires: int) -> str:
        return hmac.new(self._secret, f"{sid}.{expires}".encode(), hashlib.sha256).hexdigest()

    def create(self, principal: Principal, now: float) -> tuple[str, Session]:
        """A new session; returns the cookie value and the session."""
        self._prune(now)
        if len(self._sessions) >= _MAX_SESSIONS:  # still full of live sessions: drop the oldest
            oldest = min(self._sessions.values(), key=lambda s: s.expires)
            del self._sessions[oldest.sid]
        sid = secrets.token_urlsafe(18)
        # never longer than the key itself (keys are read once at start, so they change only with a restart,
        # which ends every session anyway)
        expires = int(min(now + self.ttl, principal.expires if principal.expires is not None else now + self.ttl))
        session = Session(sid, principal, expires)
        self._sessions[sid] = session
        return f"{sid}.{expires}.{self._mac(sid, expires)}", session

    def get(self, cookie: str | None, now: float) -> Session | None:
        """The live session a cookie value names, or None (missing, malformed, forged, expired or ended)."""
        if not cookie or len(cookie) > 200:
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
            self._sessions.pop(session.sid, None)

    def _prune(self, now: float) -> None:
        for sid in [sid for sid, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[sid]
