"""The large part of ``GET /metrics``, written as Prometheus text directly: per-shard, per-group and per-logstore
series (#19.3).

Why not prometheus-client's collectors for these: building a sample object per series and formatting it costs
~10 us, so a hub with 10,000 shards spent 60-110 ms per scrape, on the event loop, and a scrape raised heartbeat
latency from 1.6 ms to 86 ms. Here the store's state is copied into plain tuples
through the ``Store`` lookups (``shard_rows``, ``group_snapshot``), then formatted with f-strings,
on a worker thread: the event loop only takes the consumer counts from the coordinators (per group, not per
shard), which are not thread-safe.

The text is what prometheus-client wrote for the same families (names, help, types, labels), except that the
per-logstore counters no longer carry a ``_created`` series (half of their text, and no one reads it).
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Mapping

from ..wire import errors as E

__all__ = ["counter_text", "escape_label", "state_text", "StateSnapshot", "take_state"]

GroupKey = tuple[str, str, str]
# (project, logstore, [(shard id, status, bytes stored, begin_seq, end_seq)], [(group, {shard id: checkpoint seq})])
StateSnapshot = list[tuple[str, str, list[tuple[int, str, int, int, int]], list[tuple[str, dict[int, int]]]]]


_PAUSE_EVERY = 256  # logstores or children formatted between two pauses
_PAUSE = 0.0001


def _pause() -> None:
    """Give the GIL away for a moment. A worker thread holding it makes the event loop wait up to the
    interpreter's switch interval (5 ms) each time the loop wants to run; a request needs several runs, so a
    scrape built in one stretch delayed heartbeats by tens of ms. A short sleep every few hundred rows lets
    the loop in within ~1 ms, for ~5 ms more wall time per scrape at 10,000 shards."""
    time.sleep(_PAUSE)


def _read(value: Any) -> float:
    """A counter child's number. prometheus-client's MutexValue keeps it in ``_value``: read without taking
    its lock (one attribute read is atomic under the GIL; the lock cost more than the rest of the line)."""
    number = getattr(value, "_value", None)
    return float(number) if isinstance(number, (int, float)) else float(value.get())


def escape_label(value: str) -> str:
    """A label value as the text format needs it (names the hub accepts never need it; keys may)."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")
    return value


def counter_text(name: str, help_text: str, counter: Any, labelnames: tuple[str, ...],
                 heads: dict[tuple[str, ...], Any] | None = None) -> str:
    """A labelled prometheus Counter's ``<name>_total`` family, read from its children table (no ``_created``).
    ``heads`` caches each child's line between scrapes, rewritten only when its value changed (children are
    never removed)."""
    lines = [f"# HELP {name}_total {help_text}\n", f"# TYPE {name}_total counter\n"]
    heads = {} if heads is None else heads
    table = getattr(counter, "_metrics", {})
    with counter._lock:
        items = list(table.items())
    for i, (values, child) in enumerate(items):
        if i % _PAUSE_EVERY == _PAUSE_EVERY - 1:
            _pause()
        number = _read(child._value)
        hit = heads.get(values)
        if hit is None or hit[0] != number:
            head = hit[1] if hit is not None else "{}_total{{{}}} ".format(
                name, ",".join(f'{k}="{escape_label(v)}"' for k, v in zip(labelnames, values)))
            hit = heads[values] = (number, head, f"{head}{number!r}\n")
        lines.append(hit[2])
    return "".join(lines)


def take_state(store: Any) -> StateSnapshot:
    """Copy what the gauges need into plain tuples: every shard in one pass (``Store.shard_rows``, a few ms of
    the engine's lock at 10,000 shards, where ``Store.snapshot()`` copies every container), then the
    checkpoints of each consumer group (``group_snapshot``, one group at a time). A logstore or group deleted
    meanwhile is left out."""
    out: StateSnapshot = []
    by_logstore: dict[tuple[str, str], list[tuple[int, str, int, int, int]]] = {}
    for project, name, sid, status, nbytes, begin, end in store.shard_rows():
        rows = by_logstore.get((project, name))
        if rows is None:
            rows = by_logstore[(project, name)] = []
        rows.append((sid, status, nbytes, begin, end))
    groups: dict[tuple[str, str], list[tuple[str, dict[int, int]]]] = {}
    for project, name, group in store.group_keys():
        try:
            _, _, checkpoints = store.group_snapshot(project, name, group)
        except E.SLSError:  # deleted since the keys were taken
            continue
        groups.setdefault((project, name), []).append((group, {sid: cp.seq for sid, cp in checkpoints.items()}))
    for project, name in store.logstore_keys():  # a logstore with no shard left still has its groups gauge
        out.append((project, name, by_logstore.get((project, name), []), groups.get((project, name), [])))
    return out


def state_text(snapshot: StateSnapshot, members: Mapping[GroupKey, int],
               cache: dict[tuple[str, str], Any] | None = None) -> str:
    """The five state families (shard bytes and groups, consumer lag, live consumers, groups per logstore).
    ``members``: live consumers per group, taken on the event loop; a group without an entry has none.
    ``cache`` keeps each logstore's text with the values it was written from, between scrapes: a logstore
    whose shards, checkpoints and consumer counts did not change (most of a big hub's, between two scrapes)
    costs one comparison. Entries of deleted logstores are dropped when the cache outgrows the hub."""
    cache = {} if cache is None else cache
    if len(cache) > 2 * len(snapshot) + 1024:
        cache.clear()
    stored: list[str] = []
    retained: list[str] = []
    lag: list[str] = []
    consumers: list[str] = []
    ngroups: list[str] = []
    for i, (project, name, shards, groups) in enumerate(snapshot):
        if i % _PAUSE_EVERY == _PAUSE_EVERY - 1:
            _pause()
        counts = tuple(members.get((project, name, group), 0) for group, _ in groups)
        hit = cache.get((project, name))
        if hit is not None and hit[0] == shards and hit[1] == groups and hit[2] == counts:
            chunks = hit[3]
        else:
            chunks = _logstore_text(project, name, shards, groups, counts)
            cache[(project, name)] = (shards, groups, counts, chunks)
        stored.append(chunks[0])
        retained.append(chunks[1])
        lag.append(chunks[2])
        consumers.append(chunks[3])
        ngroups.append(chunks[4])
    return "".join(_family(name, help_text, lines) for name, help_text, lines in (
        ("sluice_hub_shard_bytes", "Bytes of LogGroups stored per shard", stored),
        ("sluice_hub_shard_log_groups", "LogGroups retained per shard", retained),
        ("sluice_hub_consumer_lag_log_groups",
         "LogGroups between a consumer group's checkpoint and the end of the shard", lag),
        ("sluice_hub_consumers", "Live consumers per consumer group", consumers),
        ("sluice_hub_consumer_groups", "Consumer groups per logstore", ngroups),
    ))


def _logstore_text(project: str, name: str, shards: list[tuple[int, str, int, int, int]],
                   groups: list[tuple[str, dict[int, int]]], counts: tuple[int, ...]) -> tuple[str, ...]:
    """One logstore's lines of each of the five families."""
    base = f'project="{escape_label(project)}",logstore="{escape_label(name)}"'
    stored = "".join(f'sluice_hub_shard_bytes{{{base},shard="{sid}",status="{status}"}} {nbytes}\n'
                     for sid, status, nbytes, _, _ in shards)
    retained = "".join(f'sluice_hub_shard_log_groups{{{base},shard="{sid}"}} {end - begin}\n'
                       for sid, _, _, begin, end in shards)
    lag: list[str] = []
    consumers: list[str] = []
    for (group, checkpoints), count in zip(groups, counts):
        g = escape_label(group)
        consumers.append(f'sluice_hub_consumers{{{base},group="{g}"}} {count}\n')
        for sid, _, _, begin, end in shards:
            start = checkpoints.get(sid, begin)
            lag.append(f'sluice_hub_consumer_lag_log_groups{{{base},group="{g}",shard="{sid}"}} '
                       f"{max(0, end - max(start, begin))}\n")
    return (stored, retained, "".join(lag), "".join(consumers),
            f"sluice_hub_consumer_groups{{{base}}} {len(groups)}\n")


def _family(name: str, help_text: str, lines: Iterable[str]) -> str:
    return f"# HELP {name} {help_text}\n# TYPE {name} gauge\n" + "".join(lines)
