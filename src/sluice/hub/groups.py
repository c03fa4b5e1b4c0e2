"""The consumer-group coordinator: decides, from heartbeats alone, which consumer holds which shard.

This module owns the assignment decisions of one consumer group and nothing else. It does no I/O, uses no
asyncio or threads and never reads a clock: every call takes ``now`` in seconds from the caller (a
monotonic clock; ``now`` must not go backwards). The routes serialise calls; checkpoints live in the store.

The protocol is SLS's (reference 7.8 and 9.3). A consumer heartbeats the shards it currently holds. The
answer is the complete set it should hold. The SDK keeps reporting a revoked shard until its shard
consumer has flushed its last checkpoint and shut down, and never says goodbye: it just goes silent.

Invariants, and why they hold:

1. Exclusive grant. A shard is granted (put in a response) to a consumer only if no other alive consumer
   holds it. "Holds" means it reported the shard in its last heartbeat, or was granted it in its last
   response (it may start reading the moment that response arrives, before it ever reports the shard).
   So a new owner never reads beside the old one, and planned joins, leaves and shutdowns cause no
   duplicates. The one exception is a conflict that arose outside this coordinator (after a hub restart,
   or from a consumer returning after it timed out). If the target owner and another consumer both report
   the shard, the target owner keeps it and the other is told to let go. Revoking it from both would stall
   the shard and gain nothing.
2. Balanced targets. Each alive consumer's target count is floor or ceil of shards/consumers, so the load
   spreads evenly.
3. Sticky targets. A shard keeps its previous target, or else the first-registered alive consumer reporting
   it, unless that consumer is over its quota. Only the minimum number of shards move, because every move
   costs a checkpoint flush, a shutdown, a re-initialisation and a handoff delay.
4. Restart-safe. After a hub restart the coordinator starts empty and keeps whatever consumers report. It is
   built with ``recovering=True`` for that case. For one ``timeout`` after its first heartbeat it then grants no
   shard that no consumer has reported since the restart. Every consumer alive at the restart heartbeats within
   that window, and a shard it reads but has not reported yet must not go to whoever heartbeats first.
5. Deterministic. Ties are broken by consumer name, then by shard id, so a plan can be reproduced and tested.
6. Only assignable shards are granted. The caller decides which shards are assignable. It leaves out finished
   read-only shards and, for in-order groups, children whose parents are unfinished. Any other shard is left
   out of every response, so whoever holds it lets go.
7. Cheap. A heartbeat costs O(shards + consumers) of its group. The targets are cached and recomputed only
   when the membership, a consumer's reported shards or the assignable set change.
8. Ownership is the hub's grant, never a heartbeat's claim. A shard's owner, for checkpoints, is the consumer
   it was last granted to, for as long as that consumer is alive and still holds it (granted or reporting it,
   so a releasing owner can flush its last checkpoint). A consumer that merely reports a shard, or one that
   timed out and came back reporting what it used to hold, owns nothing, and nobody but the owner may move
   the shard's checkpoint, forced or not (:meth:`GroupCoordinator.check_commit`).
9. Bounded. What a client can make a coordinator hold is bounded: heartbeat bodies list only shards that
   exist (:func:`parse_heartbeat`, at most ``MAX_HEARTBEAT_BYTES``), consumer names are at most
   ``MAX_CONSUMER_NAME`` characters and a group holds at most ``max_consumers`` consumers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from typing import TYPE_CHECKING

from ..wire import errors as E

if TYPE_CHECKING:
    from .store.base import Checkpoint, ShardMeta

__all__ = ["GroupCoordinator", "MemberInfo", "assign", "parse_heartbeat", "check_consumer_name",
           "MAX_CONSUMERS", "MAX_CONSUMER_NAME", "MAX_HEARTBEAT_BYTES", "is_finished", "assignable_shards"]

MAX_CONSUMERS = 1000
"""Consumers one group may hold at once. SLS publishes no figure; a group reads at most one consumer per shard,
and the hub's shard count per logstore is far below this, so only a flood of made-up names reaches it."""
MAX_CONSUMER_NAME = 256
"""Characters in a consumer name (the ``consumer`` URL parameter); the SDK's names are host and process ids."""
MAX_HEARTBEAT_BYTES = 64 << 10
"""A heartbeat body lists the shards a consumer holds: 64 KiB is over 6,000 ids of any size the hub hands out."""


def parse_heartbeat(body: bytes, existing: Collection[int]) -> frozenset[int]:
    """The shards a heartbeat body reports, keeping only ids in ``existing`` (the logstore's shards).

    Why: the body is the one part of a heartbeat the coordinator keeps (for the group's timeout), so it must
    not grow with what a client sends. The size is checked before parsing (a 10 MiB array of a million ids
    took 1-2 s of the event loop and 200 MB). Ids that do not exist are dropped, not refused: a consumer may
    still report a shard deleted since (DeleteShard), and refusing its heartbeat would stall it (reference 7.8).
    """
    if not body:
        return frozenset()
    if len(body) > MAX_HEARTBEAT_BYTES:
        raise E.PostBodyTooLarge(f"a heartbeat body of {len(body)} bytes exceeds the limit of {MAX_HEARTBEAT_BYTES} "
                                 f"bytes (it lists the shards the consumer holds)")
    try:
        held = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise E.PostBodyInvalid(f"the heartbeat body is not valid JSON: {type(exc).__name__}") from None
    if not isinstance(held, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in held):
        raise E.ParameterInvalid("the heartbeat body must be a JSON array of shard ids")
    return frozenset(s for s in held if s in existing)


def check_consumer_name(consumer: str | None) -> str:
    """The ``consumer`` parameter of a heartbeat, or ParameterInvalid."""
    if not consumer:
        raise E.ParameterInvalid("parameter consumer is required")
    if len(consumer) > MAX_CONSUMER_NAME:
        raise E.ParameterInvalid(f"consumer name is longer than {MAX_CONSUMER_NAME} characters")
    return consumer


def assign(shards: Sequence[int], holders: Mapping[str, frozenset[int]], previous: Mapping[int, str]) -> dict[int, str]:
    """Return the target owner of every shard in ``shards``: balanced, sticky and deterministic.

    ``holders`` maps each alive consumer to the shards it reports holding. Its iteration order is the
    registration order, and the first reporter wins when several report a shard that has no alive previous
    target. ``previous`` is the last target of each shard; owners that are not in ``holders`` are dead.

    ``shards`` are distinct ids. Each consumer's quota is floor(shards/consumers), and the remainder's
    ceil quotas go first to consumers that would otherwise have to drop a sticky shard. Every consumer then
    keeps as many of its sticky shards as its quota allows, which is the most any balanced plan can keep.
    """
    if not holders or not shards:
        return {}
    reporters: dict[int, list[str]] = {}
    for consumer, held in holders.items():
        for shard in held:
            reporters.setdefault(shard, []).append(consumer)

    # Sticky owner: the previous target if it is alive, else the first-registered consumer reporting the shard.
    kept: dict[str, list[int]] = {consumer: [] for consumer in holders}
    free: list[int] = []
    for shard in shards:
        owner = previous.get(shard)
        if owner not in kept:
            owner = next(iter(reporters.get(shard, ())), None)
        if owner is None:
            free.append(shard)
        else:
            kept[owner].append(shard)

    # Quotas. A ceil quota saves a move only for a consumer whose sticky count is above the floor, so those
    # consumers get the ceil quotas first, in name order.
    base, extra = divmod(len(shards), len(holders))
    names = sorted(holders)
    quota = dict.fromkeys(names, base)
    for consumer in sorted(names, key=lambda c: len(kept[c]) <= base)[:extra]:  # stable sort keeps name order
        quota[consumer] += 1

    # Trim consumers over quota. A consumer keeps the shards it actually reports first: dropping one it has
    # not picked up yet costs nothing.
    for consumer in names:
        mine = kept[consumer]
        if len(mine) > quota[consumer]:
            held = holders[consumer]
            mine.sort(key=lambda s: (s not in held, s))
            free.extend(mine[quota[consumer] :])
            del mine[quota[consumer] :]

    # Hand out the free shards. A consumer with room that already reports a shard takes it, because that
    # needs no handoff. The rest fill the remaining room in name order.
    target = {shard: consumer for consumer, mine in kept.items() for shard in mine}
    room = {consumer: quota[consumer] - len(kept[consumer]) for consumer in names}
    leftover: list[int] = []
    for shard in sorted(free):
        taker = next((c for c in reporters.get(shard, ()) if room[c] > 0), None)
        if taker is None:
            leftover.append(shard)
        else:
            target[shard] = taker
            room[taker] -= 1
    slots = [consumer for consumer in names for _ in range(room[consumer])]
    target.update(zip(leftover, slots, strict=True))
    return {shard: target[shard] for shard in shards}


def is_finished(shard: "ShardMeta", checkpoints: "Mapping[int, Checkpoint]") -> bool:
    """A read-only shard is finished for a group when it holds no data (never had any, or all expired) or the
    group's checkpoint (``checkpoints``: the group's, by shard id) reached its end. Finished shards are no
    longer handed out (invariant 6)."""
    if shard.is_writable:
        return False
    if shard.begin_seq >= shard.end_seq:
        return True
    cp = checkpoints.get(shard.shard_id)
    return cp is not None and cp.seq >= shard.end_seq


def assignable_shards(shards: "Mapping[int, ShardMeta]", checkpoints: "Mapping[int, Checkpoint]",
                      in_order: bool) -> list[int]:
    """The shards a group may hand out now, in id order: not finished, and for an ``in_order`` group, all parents
    finished (a parent deleted by DeleteShard counts as finished). The caller passes a consistent snapshot."""
    out = []
    for sid in sorted(shards):
        s = shards[sid]
        if is_finished(s, checkpoints):
            continue
        if in_order and any(p in shards and not is_finished(shards[p], checkpoints) for p in s.parents):
            continue
        out.append(sid)
    return out


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """One consumer as the coordinator sees it, for status displays."""

    last_seen: float
    held: frozenset[int]
    """The shards it reported in its last heartbeat."""
    granted: frozenset[int]
    """The shards in its last response."""


@dataclass(slots=True)
class _Member:
    seq: int  # registration order: the first-registered consumer wins a shard that two consumers report
    last_seen: float
    held: frozenset[int] = frozenset()
    granted: frozenset[int] = frozenset()


class GroupCoordinator:
    """The coordinator of one consumer group: heartbeats in, the shards each consumer should hold out.

    ``timeout`` is the liveness timeout in seconds. A consumer whose last heartbeat is more than
    ``timeout`` seconds old is dropped. It may be changed at any time, and the next call uses the new value.
    Pass ``recovering=True`` when the group existed before this process started (invariant 4). It then grants
    no shard that nobody has reported until ``timeout`` seconds after its first heartbeat.
    """

    def __init__(self, timeout: float, *, recovering: bool = False, max_consumers: int = MAX_CONSUMERS) -> None:
        self.timeout = timeout
        self.max_consumers = max_consumers
        # While ``now`` <= this, only shards reported since the start may be granted. The value is +inf until the
        # first heartbeat starts the window, and -inf when the coordinator is not recovering.
        self._recovery_end = math.inf if recovering else -math.inf
        self._reported_since_start: set[int] = set()
        # Ordered by last heartbeat, oldest first: each heartbeat re-inserts its member at the end, so expiry
        # only looks at the front. If ``now`` went backwards, expiry would come late, never early.
        self._members: dict[str, _Member] = {}
        self._next_seq = 0
        self._reporters: dict[int, set[str]] = {}  # shard -> alive consumers reporting it
        self._grantee: dict[int, str] = {}  # shard -> the alive consumer whose last response held it
        # shard -> the alive consumer it was last granted to, while that consumer still holds it (granted or
        # reported): the only one that may move its checkpoint (invariant 8)
        self._owner: dict[int, str] = {}
        self._assignable: tuple[int, ...] = ()
        self._targets: dict[int, str] = {}
        self._targets_of: dict[str, list[int]] = {}
        self._stale = True  # the cached targets no longer match membership, reports or assignable shards

    def heartbeat(self, consumer: str, held: Iterable[int], assignable: Sequence[int], now: float) -> list[int]:
        """Record a heartbeat and return, sorted, the shards ``consumer`` should hold from now on.

        The first heartbeat registers the consumer. An unknown consumer is registered again, never refused,
        because the SDK would otherwise stall (reference 7.8). A shard targeted here but still held by another
        alive consumer is left out until that consumer lets go or times out. The response is the full set of
        shards to hold, so a shard that is left out is one to shut down.
        """
        if self._recovery_end == math.inf:
            self._recovery_end = now + self.timeout
        self.expire(now)
        member = self._members.pop(consumer, None)
        if member is None:
            if len(self._members) >= self.max_consumers:
                raise E.SLSError(f"the consumer group already has {len(self._members)} live consumers (limit "
                                 f"{self.max_consumers}); a new consumer can join when one leaves or times out",
                                 error_code="ConsumerQuotaExceed", http_status=400)
            member = _Member(seq=self._next_seq, last_seen=now)
            self._next_seq += 1
            self._stale = True
        member.last_seen = now
        self._members[consumer] = member  # re-inserted at the end, so the dict stays ordered by last_seen

        reported = frozenset(held)
        if reported != member.held:
            self._set_reported(consumer, member, reported)
        if now <= self._recovery_end:
            self._reported_since_start.update(reported)
        shards = tuple(sorted(set(assignable)))
        if shards != self._assignable:
            self._assignable = shards
            self._stale = True
        if self._stale:
            self._recompute()

        granted = [s for s in self._targets_of.get(consumer, ()) if self._is_free_for(s, consumer, reported, now)]
        self._set_granted(consumer, member, frozenset(granted))
        return granted

    def owner_of(self, shard: int, now: float) -> str | None:
        """The alive consumer that owns ``shard`` for checkpoint purposes, or None (invariant 8).

        That is the consumer it was last granted to, while it still holds it. A releasing owner stays the owner
        until it lets go; a consumer that only reports the shard never becomes its owner.
        """
        self.expire(now)
        return self._owner.get(shard)

    def may_commit(self, consumer: str, shard: int, now: float) -> bool:
        """True if ``consumer`` owns ``shard`` (see :meth:`owner_of`)."""
        return bool(consumer) and self.owner_of(shard, now) == consumer

    def check_commit(self, consumer: str, shard: int, force: bool, now: float) -> bool:
        """Decide a checkpoint commit: True if ``consumer`` owns ``shard``; False if nobody owns it and the commit
        is forced (SLS's ``forceSuccess``: an operator resetting a checkpoint, or a last flush after the owner
        timed out); otherwise ConsumerNotMatch. Once a consumer owns the shard, nobody else moves its checkpoint,
        forced or not: a stale consumer back from a pause would rewind it, and data would be read twice."""
        owner = self.owner_of(shard, now)
        if consumer and owner == consumer:
            return True
        if owner is not None:
            raise E.ConsumerNotMatch(f"consumer {consumer!r} does not own shard {shard}: it is assigned to another "
                                     f"consumer of the group, which alone may commit its checkpoint")
        if not force:
            raise E.ConsumerNotMatch(f"consumer {consumer!r} does not hold shard {shard} (send a heartbeat first, "
                                     f"or commit with forceSuccess=true while no consumer holds it)")
        return False

    def members(self, now: float) -> dict[str, MemberInfo]:
        """The alive consumers, in registration order."""
        self.expire(now)
        ordered = sorted(self._members.items(), key=lambda item: item[1].seq)
        return {name: MemberInfo(m.last_seen, m.held, m.granted) for name, m in ordered}

    def expire(self, now: float) -> list[str]:
        """Drop every consumer silent for more than ``timeout`` seconds and return their names."""
        dropped: list[str] = []
        for name, member in self._members.items():  # oldest heartbeat first
            if now - member.last_seen <= self.timeout:
                break
            dropped.append(name)
        for name in dropped:
            self._drop(name)
        return dropped

    def leave(self, consumer: str) -> None:
        """Remove ``consumer`` at once: it says it has released everything. Unknown names are ignored."""
        if consumer in self._members:
            self._drop(consumer)

    def _is_free_for(self, shard: int, consumer: str, reported: frozenset[int], now: float) -> bool:
        """May ``shard``, targeted to ``consumer``, go in its response now? This is the handoff rule (invariant 1)."""
        grantee = self._grantee.get(shard, consumer)
        if grantee != consumer:
            return False  # its last response still holds it: it has not yet heard that the shard was revoked
        if shard in reported or self._grantee.get(shard) == consumer:
            return True  # it already holds the shard; any other reporter gets told to let go
        if self._reporters.get(shard):
            return False  # another consumer still reports it: wait until it lets go or times out
        # Nobody reports it. Just after a restart, a consumer that has not heartbeated yet may still be reading it.
        # Such a consumer was last seen no later than the window's start, so it is alive until the window's end.
        return now > self._recovery_end or shard in self._reported_since_start

    def _set_reported(self, consumer: str, member: _Member, reported: frozenset[int]) -> None:
        for shard in member.held - reported:
            reporters = self._reporters[shard]
            reporters.discard(consumer)
            if not reporters:
                del self._reporters[shard]
        for shard in reported - member.held:
            self._reporters.setdefault(shard, set()).add(consumer)
        let_go = member.held - reported
        member.held = reported
        self._release(consumer, member, let_go)
        self._stale = True

    def _release(self, consumer: str, member: _Member, shards: Iterable[int]) -> None:
        """``consumer`` no longer owns those of ``shards`` it neither holds nor was granted."""
        for shard in shards:
            if self._owner.get(shard) == consumer and shard not in member.held and shard not in member.granted:
                del self._owner[shard]

    def _set_granted(self, consumer: str, member: _Member, granted: frozenset[int]) -> None:
        if granted == member.granted:
            return
        for shard in member.granted - granted:
            if self._grantee.get(shard) == consumer:
                del self._grantee[shard]
        for shard in granted:
            self._grantee[shard] = consumer
            self._owner[shard] = consumer
        revoked = member.granted - granted
        member.granted = granted
        self._release(consumer, member, revoked)

    def _drop(self, consumer: str) -> None:
        member = self._members[consumer]
        self._set_reported(consumer, member, frozenset())
        self._set_granted(consumer, member, frozenset())
        del self._members[consumer]
        self._stale = True

    def _recompute(self) -> None:
        ordered = sorted(self._members.items(), key=lambda item: item[1].seq)
        self._targets = assign(self._assignable, {name: m.held for name, m in ordered}, self._targets)
        targets_of: dict[str, list[int]] = {name: [] for name, _ in ordered}
        for shard, owner in self._targets.items():  # in shard order, so each list is sorted
            targets_of[owner].append(shard)
        self._targets_of = targets_of
        self._stale = False
