"""What the console shows, gathered from the hub's state: plain frozen rows, no HTML.

Everything here reads snapshots of the store's in-memory metadata (``Store.snapshot`` and friends: no lock is
held here) and the coordinators (event loop only: they are not thread-safe). The one part that touches disk, the exact lag of
a consumer group, is split out as :func:`measure_lag`, which the console runs on the hub's reader executor so
the event loop never waits on a read.

Access is decided in one place: every function takes the caller's ``Principal`` and raises ``ProjectNotExist``
for a project it may not read, with the same message as for a missing one, so the console does not reveal
which projects exist.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ...wire import errors as E
from ...wire.batch import LazyLogGroup
from ...wire.loggroup import split_groups
from ..auth import Principal
from ..groups import is_finished
from ..store.base import GroupMeta, LogstoreMeta, ShardMeta, key_hex
from .ingest import Rate, RateSampler, counter_value

if TYPE_CHECKING:
    from .parts import ConsoleParts

__all__ = [
    "ConsumerRow", "GroupRow", "GroupView", "LogstoreRow", "LogstoreView", "ProjectRow", "ShardLag", "ShardRow",
    "group_view", "hidden_project", "logstore_view", "measure_lag", "overview", "project_view", "require_logstore",
]

# The exact lag in logs and bytes needs the unconsumed groups themselves (the store keeps no per-range totals in
# memory). Reading them is bounded like one PullLogs; past this window the console shows a lower bound.
LAG_SCAN_GROUPS = 1000
LAG_SCAN_BYTES = 1 << 20
_IDLE = Rate(0.0, 0.0)  # no writes in the rate window (rates are None only while there is no history yet)


@dataclass(frozen=True)
class ProjectRow:
    name: str
    description: str
    logstores: int
    shards: int
    bytes_stored: int
    log_groups: int
    rate: Rate | None


@dataclass(frozen=True)
class LogstoreRow:
    name: str
    ttl: int
    shards_writable: int
    shards: int
    bytes_stored: int
    log_groups: int
    logs_in: float  # logs accepted by PutLogs since the hub started (the store keeps no per-log totals)
    groups: int
    rate: Rate | None


@dataclass(frozen=True)
class ShardRow:
    shard_id: int
    status: str
    begin_key: str
    end_key: str
    begin_seq: int
    end_seq: int
    bytes_stored: int
    last_write_ms: int
    parents: tuple[int, ...]
    rate: Rate | None


@dataclass(frozen=True)
class GroupRow:
    name: str
    timeout: int
    in_order: bool
    consumers: int
    lag_log_groups: int


@dataclass(frozen=True)
class LogstoreView:
    project: str
    name: str
    ttl: int
    shards: list[ShardRow]
    groups: list[GroupRow]
    rate: Rate | None


@dataclass(frozen=True)
class ShardLag:
    shard_id: int
    status: str
    owner: str | None  # the alive consumer that holds it now, per the coordinator
    finished: bool  # read-only and consumed to its end: no longer handed out
    checkpoint: str  # cursor, "" if never committed
    checkpoint_seq: int | None
    committed_by: str
    updated_us: int
    begin_seq: int
    end_seq: int
    last_write_ms: int
    lag_log_groups: int
    # Filled in by measure_lag (disk reads):
    checkpoint_time_ms: int | None = None  # receive time of the first unconsumed group (the end's, if caught up)
    lag_seconds: float | None = None
    lag_logs: int | None = None
    lag_bytes: int | None = None
    lag_exact: bool = True  # False: lag_logs/lag_bytes are lower bounds (the lag is longer than one scan)


@dataclass(frozen=True)
class ConsumerRow:
    name: str
    seconds_since_heartbeat: float
    held: tuple[int, ...]
    granted: tuple[int, ...]


@dataclass(frozen=True)
class GroupView:
    project: str
    logstore: str
    name: str
    timeout: int
    in_order: bool
    shards: list[ShardLag]
    consumers: list[ConsumerRow]


def hidden_project(project: str) -> E.SLSError:
    return E.ProjectNotExist(f"project {project!r} does not exist or this access key may not read it")


def _require_project(hub: "ConsoleParts", principal: Principal, project: str) -> None:
    if not principal.can_read(project):
        raise hidden_project(project)
    try:
        hub.store.get_project(project)
    except E.ProjectNotExist:
        raise hidden_project(project) from None


def require_logstore(hub: "ConsoleParts", principal: Principal, project: str, logstore: str) -> LogstoreMeta:
    """A snapshot of the logstore, or the errors a caller who may not read it gets. Built from this logstore's
    own lookups (``shards_of``, ``groups_of``; containers copied), so a page about one logstore costs that
    logstore, not the project (``Store.snapshot(project)`` copies every logstore of it)."""
    _require_project(hub, principal, project)
    meta = hub.store.get_logstore(project, logstore)  # LogStoreNotExist
    shards = hub.store.shards_of(project, logstore)
    groups = hub.store.groups_of(project, logstore)
    return replace(meta, config=dict(meta.config), shards={s.shard_id: s for s in shards},
                   groups={g.name: replace(g, checkpoints=dict(g.checkpoints)) for g in groups})


def _lag(shard: ShardMeta, group: GroupMeta) -> int:
    """LogGroups between the checkpoint (or the oldest kept group) and the end: what /metrics reports."""
    cp = group.checkpoints.get(shard.shard_id)
    start = cp.seq if cp else shard.begin_seq
    return max(0, shard.end_seq - max(start, shard.begin_seq))


def overview(hub: "ConsoleParts", principal: Principal, rates: RateSampler) -> list[ProjectRow]:
    """Every project the principal may read: a walk over every shard (what the page is about), as plain
    tuples (``Store.shard_rows``, not a copy of every logstore), so the console runs it on a worker thread;
    rates come per project from the sampler's totals."""
    store = hub.store
    rows = []
    names = [n for n in store.project_names() if principal.can_read(n)]
    logstores: dict[str, int] = {}
    for p, _ in store.logstore_keys():
        logstores[p] = logstores.get(p, 0) + 1
    totals: dict[str, list[int]] = {}  # project -> [shards, bytes stored, log groups]
    for p, _, _, _, nbytes, begin, end in store.shard_rows():
        t = totals.get(p)
        if t is None:
            t = totals[p] = [0, 0, 0]
        t[0] += 1
        t[1] += nbytes
        t[2] += end - begin
    for name in names:
        try:
            description = store.get_project(name).description
        except E.ProjectNotExist:  # deleted since the names were taken
            continue
        nshards, nbytes, ngroups = totals.get(name, (0, 0, 0))
        rows.append(ProjectRow(name, description, logstores.get(name, 0), nshards, nbytes, ngroups,
                               rates.project_rate(name)))
    return rows


def project_view(hub: "ConsoleParts", principal: Principal, project: str, rates: RateSampler) -> list[LogstoreRow]:
    _require_project(hub, principal, project)
    by_logstore = rates.project_rates(project)
    logs_in = hub.metrics.logs_in
    rows = []
    for m in hub.store.snapshot(project):  # in name order
        shards = list(m.shards.values())
        rate = None if by_logstore is None else by_logstore.get(m.name, _IDLE)
        rows.append(LogstoreRow(m.name, m.ttl, len(m.writable_shards()), len(shards),
                                sum(s.bytes_stored for s in shards), sum(s.end_seq - s.begin_seq for s in shards),
                                counter_value(logs_in, (project, m.name)), len(m.groups), rate))
    return rows


def logstore_view(hub: "ConsoleParts", principal: Principal, project: str, logstore: str, rates: RateSampler) -> LogstoreView:
    meta = require_logstore(hub, principal, project, logstore)
    by_shard = rates.shard_rates(s.uid for s in meta.shards.values())
    now = time.monotonic()
    shards = sorted(meta.shards.values(), key=lambda s: s.shard_id)  # meta is a snapshot (require_logstore)
    shard_rows = [ShardRow(s.shard_id, s.status, key_hex(s.begin_key), key_hex(s.end_key), s.begin_seq, s.end_seq,
                           s.bytes_stored, s.last_write_ms, s.parents,
                           None if by_shard is None else by_shard.get(s.uid, _IDLE)) for s in shards]
    group_metas = sorted(meta.groups.values(), key=lambda g: g.name)
    lags = {g.name: sum(_lag(s, g) for s in shards) for g in group_metas}
    groups = []
    for g in group_metas:
        coord = hub.coordinators.get((project, logstore, g.name))
        groups.append(GroupRow(g.name, g.timeout, g.in_order, len(coord.members(now)) if coord else 0, lags[g.name]))
    return LogstoreView(project, logstore, meta.ttl, shard_rows, groups, rates.logstore_rate(project, logstore))


def group_view(hub: "ConsoleParts", principal: Principal, project: str, logstore: str, group: str) -> GroupView:
    """Owners, checkpoints and lag in LogGroups (memory only); :func:`measure_lag` adds the rest."""
    _require_project(hub, principal, project)
    g, shards, checkpoints = hub.store.group_snapshot(project, logstore, group)
    g = replace(g, checkpoints=checkpoints)
    coord = hub.coordinators.get((project, logstore, group))
    now = time.monotonic()
    members = coord.members(now) if coord else {}
    rows = []
    for sid in sorted(shards):
        s = shards[sid]
        cp = checkpoints.get(sid)
        rows.append(ShardLag(
            shard_id=s.shard_id, status=s.status, owner=coord.owner_of(s.shard_id, now) if coord else None,
            finished=is_finished(s, checkpoints), checkpoint=cp.cursor if cp else "",
            checkpoint_seq=cp.seq if cp else None, committed_by=cp.consumer if cp else "",
            updated_us=cp.update_time_us if cp else 0, begin_seq=s.begin_seq, end_seq=s.end_seq,
            last_write_ms=s.last_write_ms, lag_log_groups=_lag(s, g)))
    consumers = [ConsumerRow(name, max(0.0, now - m.last_seen), tuple(sorted(m.held)), tuple(sorted(m.granted)))
                 for name, m in members.items()]
    return GroupView(project, logstore, group, g.timeout, g.in_order, rows, consumers)


def measure_lag(hub: "ConsoleParts", view: GroupView) -> GroupView:
    """Runs on a reader thread: the checkpoint's time, and the unconsumed logs and bytes of each shard.

    Lag in seconds is the end's receive time minus the checkpoint's (what ``sluice status`` prints). Logs and
    bytes are counted from the unconsumed groups, read at most ``LAG_SCAN_GROUPS``/``LAG_SCAN_BYTES`` per shard
    (the cost of one PullLogs); beyond that they are lower bounds and ``lag_exact`` is False."""
    meta = hub.store.get_logstore(view.project, view.logstore)
    out = []
    for row in view.shards:
        shard = meta.shards.get(row.shard_id)
        if shard is None:  # deleted since the view was taken
            out.append(row)
            continue
        start = max(row.checkpoint_seq if row.checkpoint_seq is not None else row.begin_seq, row.begin_seq)
        end = row.end_seq
        if start >= end:
            out.append(replace(row, checkpoint_time_ms=row.last_write_ms or None, lag_seconds=0.0, lag_logs=0,
                                lag_bytes=0))
            continue
        first_ms = hub.store.recv_time_ms(shard, start)
        result = hub.store.read(shard, start, LAG_SCAN_GROUPS, LAG_SCAN_BYTES, end)
        nbytes = nlogs = 0
        for raw in split_groups(result.body):
            nbytes += len(raw)
            try:
                nlogs += len(LazyLogGroup(raw))  # counted on the header view: no log decoded
            except E.WireError:  # stored as received; a group the parser refuses still counts as bytes
                pass
        lag_s = (row.last_write_ms - first_ms) / 1000 if first_ms is not None else None
        out.append(replace(row, checkpoint_time_ms=first_ms, lag_seconds=lag_s, lag_logs=nlogs, lag_bytes=nbytes,
                            lag_exact=result.next_seq >= end))
    return GroupView(view.project, view.logstore, view.name, view.timeout, view.in_order, out, view.consumers)
