"""Console sessions and sign-in throttling under abuse (#17 items 8 and 11); no I/O, explicit clocks."""

from __future__ import annotations

from sluice.hub.auth import Principal
from sluice.hub.console.session import MAX_SESSIONS_PER_KEY, SessionStore, SignInThrottle


def test_hardening_one_keys_sign_ins_never_end_another_keys_session() -> None:
    store = SessionStore(ttl=100, secret=b"k" * 32)
    other, _ = store.create(Principal("other"), now=1000)
    first, _ = store.create(Principal("loop"), now=1000)
    for _ in range(3 * MAX_SESSIONS_PER_KEY):
        store.create(Principal("loop"), now=1001)
    assert store.get(other, now=1002) is not None
    assert store.get(first, now=1002) is None, "the looping key's own oldest session went first"
    assert store.count("loop") == MAX_SESSIONS_PER_KEY
    assert store.count() == MAX_SESSIONS_PER_KEY + 1


def test_hardening_non_ascii_or_oversized_cookies_are_no_session() -> None:
    store = SessionStore(ttl=100, secret=b"k" * 32)
    cookie, _ = store.create(Principal("id"), now=1000)
    sid, expires, mac = cookie.split(".")
    for bad in ("\u00e9t\u00e9", f"{sid}.{expires}.{mac[:-1]}\u00e9", f"{sid}\udcff.{expires}.{mac}", "x" * 10_000):
        assert store.get(bad, now=1001) is None
    store.end("\u00e9", now=1001)  # ending a bad cookie is a no-op, not an error
    assert store.get(cookie, now=1001) is not None


def test_hardening_sign_in_throttle_buckets() -> None:
    t = SignInThrottle(key_burst=3, key_interval=2.0, address_burst=5, address_interval=1.0)
    for _ in range(3):
        assert t.retry_after("k", "a", now=0.0) == 0
        t.failed("k", "a", now=0.0)
    assert t.retry_after("k", "a", now=0.0) == 2.0  # the key's bucket is empty
    assert t.retry_after("k2", "b", now=0.0) == 0  # other keys and addresses are not affected
    assert t.retry_after("k", "a", now=2.0) == 0  # one token back after the interval
    t.failed("k", "a", now=2.0)
    assert t.retry_after("k", "a", now=2.5) > 0
    for i in range(5):  # one address guessing many keys
        t.failed(f"key{i}", "c", now=10.0)
    assert t.retry_after("fresh", "c", now=10.0) == 1.0


def test_hardening_sign_in_throttle_tables_are_bounded() -> None:
    t = SignInThrottle(max_entries=100)
    for i in range(10_000):
        t.failed("", f"10.0.{i // 256}.{i % 256}", now=float(i))
    assert len(t._addresses) <= 100 and len(t._keys) == 1
