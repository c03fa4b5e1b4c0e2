"""The consumer-group coordinator (sluice.hub.groups): assignment rules and heartbeat handoff, with no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from sluice.hub import groups
from sluice.hub.groups import GroupCoordinator, MemberInfo, assign

TIMEOUT = 3.0


def beat_round(coord: GroupCoordinator, held: dict[str, list[int]], assignable: list[int], now: float) -> None:
    """One heartbeat round in name order. Each consumer reports its last response (the 'exact' SDK model)."""
    for name in sorted(held):
        held[name] = coord.heartbeat(name, held[name], assignable, now)


# ---------------------------------------------------------------------------------------------- assign()


def test_assign_without_consumers_is_empty() -> None:
    """No alive consumer: no shard has a target."""
    assert assign([0, 1], {}, {0: "a"}) == {}
    assert assign([], {"a": frozenset()}, {}) == {}


def test_assign_spreads_evenly_and_ties_break_by_name() -> None:
    """A fresh group: counts differ by at most one; lower names get the extra shards and the lower ids."""
    plan = assign(range(5), {"b": frozenset(), "a": frozenset()}, {})
    assert plan == {0: "a", 1: "a", 2: "a", 3: "b", 4: "b"}


def test_assign_keeps_previous_owner_and_moves_only_the_excess() -> None:
    """A join takes its share from the overloaded owner only, and the lowest-cost shards move."""
    plan = assign(range(4), {"a": frozenset(range(4)), "b": frozenset()}, dict.fromkeys(range(4), "a"))
    assert plan == {0: "a", 1: "a", 2: "b", 3: "b"}


def test_assign_dead_previous_owner_falls_back_to_reporter() -> None:
    """A dead previous owner's shard goes to the alive consumer that reports it, before anyone else."""
    plan = assign([0, 1], {"a": frozenset(), "b": frozenset({1})}, {0: "dead", 1: "dead"})
    assert plan == {0: "a", 1: "b"}


def test_assign_double_report_goes_to_first_registered() -> None:
    """With no previous owner, a shard that two consumers report goes to the first in `holders` order."""
    holders = {"b": frozenset({0}), "a": frozenset({0})}
    assert assign([0, 1], holders, {})[0] == "b"


def test_assign_over_quota_drops_unreported_shards_first() -> None:
    """An owner over quota drops a shard it has not picked up yet before one it is reading."""
    plan = assign([0, 1], {"a": frozenset({1}), "b": frozenset()}, {0: "a", 1: "a"})
    assert plan == {0: "b", 1: "a"}


NAMES = ["a", "b", "c", "d", "e"]
AssignInputs = tuple[list[int], dict[str, frozenset[int]], dict[int, str]]


@st.composite
def assign_inputs(draw: st.DrawFn) -> AssignInputs:
    shards = sorted(draw(st.sets(st.integers(0, 11))))
    names = draw(st.permutations(NAMES))[: draw(st.integers(1, len(NAMES)))]
    holders = {name: frozenset(draw(st.sets(st.integers(0, 13), max_size=6))) for name in names}
    previous = draw(st.dictionaries(st.integers(0, 13), st.sampled_from([*NAMES, "gone", "dead"])))
    return shards, holders, previous


def sticky_owner(shard: int, holders: dict[str, frozenset[int]], previous: dict[int, str]) -> str | None:
    """The owner a shard sticks to: its previous owner if alive, else the first alive consumer reporting it."""
    if previous.get(shard) in holders:
        return previous[shard]
    return next((c for c, held in holders.items() if shard in held), None)


@given(assign_inputs())
def test_assign_is_balanced_total_and_minimal(inputs: AssignInputs) -> None:
    """Every shard gets an alive owner, counts are floor or ceil, and no more shards move than balance requires."""
    shards, holders, previous = inputs
    plan = assign(shards, holders, previous)
    assert list(plan) == shards
    assert set(plan.values()) <= set(holders)
    base, extra = divmod(len(shards), len(holders))
    counts = {c: list(plan.values()).count(c) for c in holders}
    assert all(n in (base, base + 1) for n in counts.values())
    assert sum(n == base + 1 for n in counts.values()) == extra

    # The minimum: each consumer keeps at most its quota of its sticky shards; `extra` may keep base + 1.
    sticky = {s: sticky_owner(s, holders, previous) for s in shards}
    sticky_counts = {c: list(sticky.values()).count(c) for c in holders}
    above_floor = sum(n > base for n in sticky_counts.values())
    keepable = sum(min(n, base) for n in sticky_counts.values()) + min(extra, above_floor)
    moved = sum(plan[s] != sticky[s] for s in shards)
    assert moved <= len(shards) - keepable
    # A sticky owner within the floor keeps every one of its shards.
    for s in shards:
        owner = sticky[s]
        if owner is not None and sticky_counts[owner] <= base:
            assert plan[s] == owner


@given(assign_inputs(), st.data())
def test_assign_is_deterministic_and_stable(inputs: AssignInputs, data: st.DataObject) -> None:
    """The same inputs give the same plan, and re-planning from a plan moves nothing whatever is reported."""
    shards, holders, previous = inputs
    plan = assign(shards, holders, previous)
    assert assign(shards, dict(holders), dict(reversed(previous.items()))) == plan
    reports = {c: frozenset(data.draw(st.sets(st.integers(0, 13), max_size=6))) for c in holders}
    assert assign(shards, reports, plan) == plan


# ---------------------------------------------------------------------------------------- heartbeats


def test_first_heartbeat_registers_and_grants_everything() -> None:
    """There is no join call: an unknown consumer's heartbeat registers it and gets every free shard."""
    coord = GroupCoordinator(TIMEOUT)
    assert coord.heartbeat("a", [], [0, 1, 2], now=0.0) == [0, 1, 2]
    assert coord.members(0.0) == {"a": MemberInfo(last_seen=0.0, held=frozenset(), granted=frozenset({0, 1, 2}))}


def test_response_is_a_list_even_when_empty() -> None:
    """The SDK calls extend() on the response, so it is always a list, even for an extra consumer."""
    coord = GroupCoordinator(TIMEOUT)
    coord.heartbeat("a", [], [0], now=0.0)
    assert coord.heartbeat("b", [], [0], now=0.0) == []


@pytest.mark.parametrize("joiner", ["0first", "zlast"])
def test_join_is_fully_granted_within_two_rounds(joiner: str) -> None:
    """A join is granted its whole share by its heartbeat in the second round after the round it joined in.

    The old owner needs one heartbeat to hear of the revocation and one to report that it let go; the
    joiner then gets the shard on its next heartbeat. That holds whether it heartbeats before or after them.
    """
    coord = GroupCoordinator(TIMEOUT)
    held: dict[str, list[int]] = {"m": []}
    beat_round(coord, held, list(range(4)), now=0.0)
    beat_round(coord, held, list(range(4)), now=1.0)
    assert held == {"m": [0, 1, 2, 3]}

    held[joiner] = []
    beat_round(coord, held, list(range(4)), now=2.0)  # the join round
    assert held[joiner] == []  # the old owner still reads those shards
    beat_round(coord, held, list(range(4)), now=3.0)
    beat_round(coord, held, list(range(4)), now=4.0)
    assert sorted(len(shards) for shards in held.values()) == [2, 2]
    assert set(held["m"]) | set(held[joiner]) == {0, 1, 2, 3}


def test_handoff_waits_while_old_owner_still_reports_the_shard() -> None:
    """A revoked shard goes to its new owner only after the old owner stops reporting it, as the SDK does."""
    coord = GroupCoordinator(TIMEOUT)
    assert coord.heartbeat("a", [], [0, 1], now=0.0) == [0, 1]
    assert coord.heartbeat("b", [], [0, 1], now=0.1) == []
    assert coord.heartbeat("a", [0, 1], [0, 1], now=1.0) == [0]  # shard 1 revoked
    assert coord.heartbeat("b", [], [0, 1], now=1.1) == []  # a still reports 1 while it shuts down
    assert coord.owner_of(1, now=1.2) == "a"
    assert coord.may_commit("a", 1, now=1.2)  # it may flush its final checkpoint
    assert coord.heartbeat("a", [0, 1], [0, 1], now=2.0) == [0]  # still shutting down
    assert coord.heartbeat("b", [], [0, 1], now=2.1) == []
    assert coord.heartbeat("a", [0], [0, 1], now=3.0) == [0]  # let go
    assert coord.owner_of(1, now=3.0) is None
    assert coord.heartbeat("b", [], [0, 1], now=3.1) == [1]
    assert coord.owner_of(1, now=3.2) == "b"
    assert not coord.may_commit("a", 1, now=3.2)


def test_granted_but_unreported_shard_is_not_handed_over() -> None:
    """A consumer may read a shard from the moment it is granted, before it reports it, so that grant blocks others."""
    coord = GroupCoordinator(TIMEOUT)
    assert coord.heartbeat("a", [], [0, 1], now=0.0) == [0, 1]  # a starts reading 0 and 1 now
    assert coord.heartbeat("b", [], [0, 1], now=0.1) == []
    assert coord.heartbeat("a", [0, 1], [0, 1], now=1.0) == [0]
    assert coord.heartbeat("a", [0], [0, 1], now=2.0) == [0]
    assert coord.heartbeat("b", [], [0, 1], now=2.1) == [1]


def test_leave_frees_shards_at_once() -> None:
    """A consumer that says it released everything is removed; its shards go out on the next heartbeat."""
    coord = GroupCoordinator(TIMEOUT)
    held: dict[str, list[int]] = {"a": [], "b": []}
    for now in (0.0, 1.0, 2.0, 3.0):
        beat_round(coord, held, [0, 1, 2, 3], now)
    assert held == {"a": [0, 1], "b": [2, 3]}
    coord.leave("b")
    coord.leave("never-seen")  # unknown names are ignored
    assert list(coord.members(3.5)) == ["a"]
    assert coord.heartbeat("a", [0, 1], [0, 1, 2, 3], now=3.5) == [0, 1, 2, 3]


def test_silent_consumer_keeps_its_shards_until_timeout() -> None:
    """A crashed consumer's shards are held back until it has been silent for more than `timeout`, then reassigned."""
    coord = GroupCoordinator(TIMEOUT)
    held: dict[str, list[int]] = {"a": [], "b": []}
    for now in (0.0, 1.0, 2.0, 3.0):
        beat_round(coord, held, [0, 1, 2, 3], now)
    # b crashes after its heartbeat at t=3.
    assert coord.heartbeat("a", [0, 1], [0, 1, 2, 3], now=5.0) == [0, 1]
    assert coord.heartbeat("a", [0, 1], [0, 1, 2, 3], now=6.0) == [0, 1]  # silent for exactly timeout: alive
    assert coord.may_commit("b", 2, now=6.0)
    assert coord.expire(6.5) == ["b"]
    assert coord.expire(6.5) == []
    assert not coord.may_commit("b", 2, now=6.5)
    assert coord.heartbeat("a", [0, 1], [0, 1, 2, 3], now=7.0) == [0, 1, 2, 3]


def test_timeout_is_settable() -> None:
    """Changing `timeout` applies to the next call."""
    coord = GroupCoordinator(10.0)
    coord.heartbeat("a", [], [0], now=0.0)
    assert coord.expire(5.0) == []
    coord.timeout = 4.0
    assert coord.timeout == 4.0
    assert coord.expire(5.0) == ["a"]


def test_unassignable_shard_is_released_and_never_granted() -> None:
    """A finished read-only shard leaves every response; its holder may still commit until it lets go."""
    coord = GroupCoordinator(TIMEOUT)
    held: dict[str, list[int]] = {"a": [], "b": []}
    for now in (0.0, 1.0, 2.0, 3.0):
        beat_round(coord, held, [0, 1, 2], now)
    assert held == {"a": [0, 1], "b": [2]}
    # Shard 0 is finished: the caller leaves it out of the assignable set.
    assert coord.heartbeat("a", [0, 1], [1, 2], now=4.0) == [1]
    assert coord.may_commit("a", 0, now=4.0)
    assert coord.owner_of(0, now=4.0) == "a"
    assert coord.heartbeat("b", [2], [1, 2], now=4.1) == [2]
    assert coord.heartbeat("a", [0, 1], [1, 2], now=5.0) == [1]  # still flushing shard 0
    assert coord.heartbeat("a", [1], [1, 2], now=6.0) == [1]
    assert coord.owner_of(0, now=6.0) is None
    assert not coord.may_commit("a", 0, now=6.0)
    assert coord.heartbeat("b", [0, 2], [1, 2], now=6.1) == [2]  # reporting it never gets it back


def test_hub_restart_keeps_reported_shards() -> None:
    """After a hub restart, consumers keep what they report; a join then moves only the excess."""
    coord = GroupCoordinator(TIMEOUT, recovering=True)
    assert coord.heartbeat("b", [2, 3], [0, 1, 2, 3], now=0.0) == [2, 3]  # 0 and 1 may still be read by a
    assert coord.heartbeat("a", [0, 1], [0, 1, 2, 3], now=0.1) == [0, 1]
    assert coord.heartbeat("c", [], [0, 1, 2, 3], now=0.2) == []
    assert coord.heartbeat("a", [0, 1], [0, 1, 2, 3], now=1.0) == [0, 1]  # a has the extra quota (name order)
    assert coord.heartbeat("b", [2, 3], [0, 1, 2, 3], now=1.1) == [2]
    assert coord.heartbeat("c", [], [0, 1, 2, 3], now=1.2) == []
    assert coord.heartbeat("b", [2], [0, 1, 2, 3], now=2.0) == [2]
    assert coord.heartbeat("c", [], [0, 1, 2, 3], now=2.1) == [3]


def test_hub_restart_withholds_unreported_shards_for_one_timeout() -> None:
    """When recovering, a shard nobody reports is granted only `timeout` after the first heartbeat, because a
    consumer that has not heartbeated since the restart may still be reading it. Without it, at once."""
    coord = GroupCoordinator(TIMEOUT, recovering=True)
    assert coord.heartbeat("a", [0], [0, 1], now=10.0) == [0]
    assert coord.heartbeat("a", [0], [0, 1], now=13.0) == [0]  # one last seen at 10.0 is still alive
    assert coord.heartbeat("a", [0], [0, 1], now=13.1) == [0, 1]
    assert GroupCoordinator(TIMEOUT).heartbeat("a", [0], [0, 1], now=10.0) == [0, 1]


def test_hub_restart_double_report_first_registered_keeps_it() -> None:
    """If two consumers report the same shard, the first to register keeps it and the other is told to let go."""
    coord = GroupCoordinator(TIMEOUT, recovering=True)
    assert coord.heartbeat("b", [0], [0, 1], now=0.0) == [0]
    assert coord.heartbeat("a", [0], [0, 1], now=0.1) == []  # shard 1 is withheld while recovering
    assert coord.owner_of(0, now=0.1) == "b"
    assert coord.heartbeat("b", [0], [0, 1], now=1.0) == [0]
    assert coord.heartbeat("a", [], [0, 1], now=3.5) == [1]


def test_double_report_without_restart_resolves_without_ping_pong() -> None:
    """A first heartbeat takes every free shard; a later one reporting part of them waits until it is released."""
    coord = GroupCoordinator(TIMEOUT)
    assert coord.heartbeat("b", [0], [0, 1], now=0.0) == [0, 1]
    assert coord.heartbeat("a", [0], [0, 1], now=0.1) == []  # b was granted 1 and may be reading it
    assert coord.heartbeat("b", [0, 1], [0, 1], now=1.0) == [0]
    assert coord.heartbeat("a", [0], [0, 1], now=1.1) == []  # b is still letting go of 1
    assert coord.heartbeat("b", [0], [0, 1], now=2.0) == [0]
    assert coord.heartbeat("a", [], [0, 1], now=2.1) == [1]


def test_returning_zombie_does_not_take_the_shard_back() -> None:
    """A consumer that timed out and comes back reporting old shards is told to let go; the new owner keeps them."""
    coord = GroupCoordinator(TIMEOUT)
    coord.heartbeat("a", [], [0], now=0.0)
    assert coord.heartbeat("b", [], [0], now=10.0) == [0]  # a timed out
    assert coord.heartbeat("a", [0], [0], now=10.1) == []
    assert coord.heartbeat("b", [0], [0], now=11.0) == [0]
    assert coord.owner_of(0, now=11.0) == "b"


def test_unchanged_heartbeats_reuse_the_cached_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    """Targets are recomputed only when membership, reported shards or the assignable set change."""
    calls: list[int] = []
    real_assign = groups.assign

    def counting_assign(
        shards: Sequence[int], holders: Mapping[str, frozenset[int]], previous: Mapping[int, str]
    ) -> dict[int, str]:
        calls.append(1)
        return real_assign(shards, holders, previous)

    monkeypatch.setattr(groups, "assign", counting_assign)
    coord = GroupCoordinator(TIMEOUT)
    held: dict[str, list[int]] = {"a": [], "b": []}
    for now in (0.0, 1.0, 2.0, 3.0):
        beat_round(coord, held, [0, 1, 2, 3], now)
    settled = len(calls)
    for now in (4.0, 5.0, 6.0):
        beat_round(coord, held, [0, 1, 2, 3], now)
    assert len(calls) == settled
    coord.heartbeat("a", held["a"], [0, 1, 2], now=7.0)
    assert len(calls) == settled + 1


# ------------------------------------------------------------------------------------ stateful model


@dataclass
class SimConsumer:
    """A consumer process. An exact one reports its last response; a lagging one, like the SDK, also reports
    the shards revoked by that response for one more round while it shuts them down."""

    lagging: bool
    last_beat: float
    last: frozenset[int] = frozenset()
    before: frozenset[int] = frozenset()

    def reading(self) -> frozenset[int]:
        """The shards it is reading or still shutting down, which is also what its next heartbeat reports."""
        return self.last | self.before if self.lagging else self.last

    def respond(self, granted: list[int]) -> None:
        self.before, self.last = self.last, frozenset(granted)


class GroupMachine(RuleBasedStateMachine):
    """Random joins, graceful leaves, crashes, time passing, shard-set changes and heartbeats."""

    def __init__(self) -> None:
        super().__init__()
        self.coord = GroupCoordinator(TIMEOUT)
        self.now = 0.0
        self.assignable = [0, 1, 2, 3]
        self.running: dict[str, SimConsumer] = {}
        self.recovery_end = float("-inf")  # after a hub restart: when unreported shards may be granted again

    def beat(self, name: str) -> None:
        sim = self.running[name]
        if self.recovery_end == float("inf"):  # the first heartbeat after a restart starts the window
            self.recovery_end = self.now + TIMEOUT
        granted = self.coord.heartbeat(name, sim.reading(), self.assignable, self.now)
        sim.last_beat = self.now
        assert granted == sorted(granted) and set(granted) <= set(self.assignable)
        sim.respond(granted)
        self.check_exclusive()

    def check_exclusive(self) -> None:
        """Rule (a): no shard is granted to two alive consumers, nor to one while another alive one reports it."""
        alive = self.coord.members(self.now)
        for sim in self.running.values():
            if self.now - sim.last_beat > TIMEOUT:  # expired: in this model it stops reading (the SDK does, later)
                sim.last = sim.before = frozenset()
        for name, info in alive.items():
            for other, other_info in alive.items():
                if other != name:
                    assert not info.granted & other_info.granted
                    assert not info.granted & other_info.held
        reading = [sim.reading() for sim in self.running.values()]
        assert sum(len(r) for r in reading) == len(frozenset().union(*reading)), "a shard is read twice"

    @precondition(lambda self: len(self.running) < len(NAMES))
    @rule(data=st.data(), lagging=st.booleans())
    def start(self, data: st.DataObject, lagging: bool) -> None:
        name = data.draw(st.sampled_from([n for n in NAMES if n not in self.running]))
        self.running[name] = SimConsumer(lagging, last_beat=self.now)
        self.beat(name)

    @precondition(lambda self: bool(self.running))
    @rule(data=st.data())
    def heartbeat(self, data: st.DataObject) -> None:
        self.beat(data.draw(st.sampled_from(sorted(self.running))))

    @precondition(lambda self: bool(self.running))
    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        """A graceful stop: the consumer stops reading everything, then says so."""
        name = data.draw(st.sampled_from(sorted(self.running)))
        del self.running[name]
        self.coord.leave(name)

    @precondition(lambda self: bool(self.running))
    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        """A crash or an SDK-style stop: the consumer goes silent and the coordinator finds out by timeout."""
        del self.running[data.draw(st.sampled_from(sorted(self.running)))]

    @rule(dt=st.sampled_from([0.1, 1.0, 2.0, TIMEOUT + 0.5]))
    def tick(self, dt: float) -> None:
        self.now += dt

    @rule()
    def restart_hub(self) -> None:
        """The hub restarts: a fresh coordinator, while the consumers keep reading what they hold."""
        self.coord = GroupCoordinator(TIMEOUT, recovering=True)
        self.recovery_end = float("inf")

    @rule(shards=st.sets(st.integers(0, 5)))
    def change_shards(self, shards: set[int]) -> None:
        self.assignable = sorted(shards)

    @rule()
    def settle(self) -> None:
        """Rule (b): rounds in a fixed order, with each consumer heartbeating once a second. Crashed consumers
        time out. Within 3 rounds of the last membership change (4 if a consumer lags, since it reports a
        revoked shard for one more round), every assignable shard is granted to exactly one consumer and the
        counts differ by at most one. The end of a restart's recovery window counts as a change."""
        bound = 4 if any(sim.lagging for sim in self.running.values()) else 3
        rnd, last_change = 0, 1  # a change made just before settling counts as one in round 1
        while True:
            rnd += 1
            assert rnd < 20, "settling does not terminate"
            self.now += 1.0
            if self.coord.expire(self.now) or (self.running and self.now <= self.recovery_end + 1.0):
                last_change = rnd
            for name in sorted(self.running):
                if name not in self.coord.members(self.now):
                    last_change = rnd
                self.beat(name)
            crashed_pending = set(self.coord.members(self.now)) != set(self.running)
            if rnd >= last_change + bound - 1 and not crashed_pending:
                break
        self.check_settled()

    def check_settled(self) -> None:
        alive = self.coord.members(self.now)
        assert set(alive) == set(self.running)
        if not alive:
            return
        counts = [len(info.granted) for info in alive.values()]
        assert sum(counts) == len(self.assignable)
        assert frozenset().union(*(info.granted for info in alive.values())) == set(self.assignable)
        assert max(counts) - min(counts) <= 1

    @invariant()
    def exclusive(self) -> None:
        self.check_exclusive()


GroupMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
test_group_machine = GroupMachine.TestCase
