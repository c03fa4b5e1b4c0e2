"""Console sessions: signed cookies that end on sign-out, on their expiry, and never after their key's."""

from __future__ import annotations

from sluice.hub.auth import Principal
from sluice.hub.console.session import SessionStore


def test_session_round_trip_forgery_and_sign_out() -> None:
    store = SessionStore(ttl=100, secret=b"k" * 32)
    cookie, session = store.create(Principal("id"), now=1000)
    assert store.get(cookie, now=1050) == session
    sid, expires, mac = cookie.split(".")
    assert store.get(f"{sid}.{int(expires) + 999}.{mac}", now=1050) is None, "an edited expiry is refused"
    assert store.get(f"{sid}.{expires}.{'0' * len(mac)}", now=1050) is None, "a forged MAC is refused"
    assert store.get(cookie, now=1100) is None, "expired"
    cookie, _ = store.create(Principal("id"), now=2000)
    store.end(cookie, now=2001)
    assert store.get(cookie, now=2002) is None, "signed out"


def test_a_session_ends_when_its_key_does() -> None:
    store = SessionStore(ttl=8 * 3600)
    cookie, session = store.create(Principal("sts", expires=1600.0), now=1000)
    assert session.expires == 1600
    assert store.get(cookie, now=1599) is not None
    assert store.get(cookie, now=1600) is None
