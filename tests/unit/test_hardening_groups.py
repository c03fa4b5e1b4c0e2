"""Checkpoint ownership and heartbeat bounds in the coordinator (#17 items 2 and 5); no I/O."""

from __future__ import annotations

import json

import pytest

from sluice.hub.groups import MAX_HEARTBEAT_BYTES, GroupCoordinator, check_consumer_name, parse_heartbeat
from sluice.wire import errors as E

TIMEOUT = 3.0


def test_hardening_only_the_granted_owner_commits() -> None:
    coord = GroupCoordinator(TIMEOUT)
    assert coord.heartbeat("a", [], [0], now=0.0) == [0]
    assert coord.check_commit("a", 0, False, now=0.1) is True
    assert coord.heartbeat("b", [0], [0], now=0.2) == []  # lists it, never granted
    for force in (False, True):
        with pytest.raises(E.ConsumerNotMatch):
            coord.check_commit("b", 0, force, now=0.3)
        with pytest.raises(E.ConsumerNotMatch):
            coord.check_commit("", 0, force, now=0.3)
    # a times out; b (still listing it) is granted it and becomes the owner; a comes back listing it
    assert coord.heartbeat("b", [0], [0], now=4.0) == [0]
    assert coord.owner_of(0, now=4.0) == "b"
    assert coord.heartbeat("a", [0], [0], now=4.1) == []
    with pytest.raises(E.ConsumerNotMatch):
        coord.check_commit("a", 0, True, now=4.2)
    assert coord.check_commit("b", 0, True, now=4.2) is True


def test_hardening_forced_commit_with_no_owner_is_allowed() -> None:
    coord = GroupCoordinator(TIMEOUT)
    assert coord.check_commit("", 0, True, now=0.0) is False  # nobody owns it: SLS's operator reset
    with pytest.raises(E.ConsumerNotMatch):
        coord.check_commit("x", 0, False, now=0.0)


def test_hardening_releasing_owner_may_flush_until_it_lets_go() -> None:
    coord = GroupCoordinator(TIMEOUT)
    assert coord.heartbeat("a", [], [0, 1], now=0.0) == [0, 1]
    assert coord.heartbeat("b", [], [0, 1], now=0.1) == []
    assert coord.heartbeat("a", [0, 1], [0, 1], now=1.0) == [0]  # 1 revoked, a still reports it
    assert coord.check_commit("a", 1, True, now=1.1) is True
    assert coord.heartbeat("a", [0], [0, 1], now=2.0) == [0]  # let go
    assert coord.owner_of(1, now=2.0) is None
    assert coord.heartbeat("b", [], [0, 1], now=2.1) == [1]
    with pytest.raises(E.ConsumerNotMatch):
        coord.check_commit("a", 1, True, now=2.2)


def test_hardening_consumers_per_group_are_bounded() -> None:
    coord = GroupCoordinator(TIMEOUT, max_consumers=3)
    for name in "abc":
        coord.heartbeat(name, [], [0], now=0.0)
    with pytest.raises(E.SLSError) as exc:
        coord.heartbeat("d", [], [0], now=0.1)
    assert exc.value.error_code == "ConsumerQuotaExceed"
    coord.heartbeat("a", [], [0], now=0.2)  # members keep beating
    coord.heartbeat("d", [], [0], now=3.5)  # b and c timed out: room again


def test_hardening_heartbeat_bodies() -> None:
    assert parse_heartbeat(b"", {0, 1}) == frozenset()
    assert parse_heartbeat(b"[0, 1, 7, 1, -3]", {0, 1}) == {0, 1}
    with pytest.raises(E.PostBodyTooLarge):
        parse_heartbeat(json.dumps(list(range(1_000_000))).encode(), {0, 1})
    for bad in (b"{}", b'["0"]', b"[true]", b"[1.5]"):
        with pytest.raises(E.ParameterInvalid):
            parse_heartbeat(bad, {0, 1})
    with pytest.raises(E.PostBodyInvalid):
        parse_heartbeat(b"[" * 100 + b"\xff", {0})
    assert len(json.dumps(list(range(6000)))) < MAX_HEARTBEAT_BYTES
    with pytest.raises(E.ParameterInvalid):
        check_consumer_name("")
    with pytest.raises(E.ParameterInvalid):
        check_consumer_name("x" * 257)
    assert check_consumer_name("c-1") == "c-1"
