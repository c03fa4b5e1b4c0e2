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
from typing import Any, Iterable, Mapping, Sequence

from ..wire import errors as E

__all__ = ["CounterLines", "StateLines", "counter_text", "escape_label", "state_text", "StateSnapshot", "take_state"]

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
    groups = take_groups(store)
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


# ============================================================================================ between scrapes
# What a running hub uses (#19.3): the text of the previous scrape is kept line by line with the values it was
# written from, so a scrape costs a few C-level comparisons over the hub's rows plus the lines that changed, not
# the formatting (or even the Python-level walk) of every shard. Lines are kept in blocks of encoded bytes, so
# a changed line costs the re-encoding of its block only, and the body is one join of the blocks (``parts``
# return them; ``HubMetrics`` joins). ``counter_text``/``state_text`` above write the same samples from scratch:
# the tests hold the two to the same output.

ShardRow = tuple[str, str, int, str, int, int, int]
_FAMILIES = (
    ("sluice_hub_shard_bytes", "Bytes of LogGroups stored per shard"),
    ("sluice_hub_shard_log_groups", "LogGroups retained per shard"),
    ("sluice_hub_consumer_lag_log_groups", "LogGroups between a consumer group's checkpoint and the end of the shard"),
    ("sluice_hub_consumers", "Live consumers per consumer group"),
    ("sluice_hub_consumer_groups", "Consumer groups per logstore"),
)
_SHIFT = 8  # 256 lines per block


class _Lines:
    """A family's lines (str, one per series) and their blocks of encoded bytes; ``dirty``: blocks to encode."""

    __slots__ = ("lines", "blocks", "dirty")

    def __init__(self, n: int = 0) -> None:
        self.lines = [""] * n
        self.blocks = [b""] * ((n + (1 << _SHIFT) - 1) >> _SHIFT)
        self.dirty = set(range(len(self.blocks)))

    def encoded(self) -> list[bytes]:
        if self.dirty:
            lines, blocks = self.lines, self.blocks
            for b in self.dirty:
                blocks[b] = "".join(lines[b << _SHIFT:(b + 1) << _SHIFT]).encode()
            self.dirty.clear()
        return self.blocks


class CounterLines:
    """A labelled prometheus Counter's ``<name>_total`` family (as ``counter_text``), kept between scrapes.

    A scrape reads every child's number into one list (children are MutexValues: their ``_value`` read without
    their lock, as ``_read``) and compares it with the previous list in one C-level comparison; only lines whose
    number changed are rewritten (and their blocks encoded again). Children added or removed since (the key list
    differs) rebuild the index, reusing the label text of the known ones. Not thread-safe: one scrape at a time
    (``HubMetrics`` holds a lock)."""

    def __init__(self, name: str, help_text: str, counter: Any, labelnames: tuple[str, ...]) -> None:
        self.name, self.counter, self.labelnames = name, counter, labelnames
        self._header = f"# HELP {name}_total {help_text}\n# TYPE {name}_total counter\n".encode()
        self._keys: list[tuple[str, ...]] = []
        self._children: list[Any] = []  # the children's value objects, in the table's order
        self._fast = True  # every value object keeps a plain number in ``_value``
        self._heads: list[str] = []
        self._numbers: list[Any] = []
        self._lines = _Lines()
        self._parts: list[bytes] | None = None

    def parts(self) -> list[bytes]:
        """The family's text as chunks to join; the same list object while nothing changed."""
        table = getattr(self.counter, "_metrics", {})
        with self.counter._lock:
            keys = list(table)
            if keys != self._keys:
                self._reindex(keys, [table[k]._value for k in keys])
        if self._fast:
            numbers = [v._value for v in self._children]
        else:
            numbers = [_read(v) for v in self._children]
        if numbers != self._numbers:
            old = self._numbers
            lines, dirty, heads = self._lines.lines, self._lines.dirty, self._heads
            for i, number in enumerate(numbers):
                if number != old[i]:
                    lines[i] = f"{heads[i]}{float(number)!r}\n"
                    dirty.add(i >> _SHIFT)
            self._numbers = numbers
            self._parts = None
        if self._parts is None:
            self._parts = [self._header, *self._lines.encoded()]
        return self._parts

    def text(self) -> bytes:
        return b"".join(self.parts())

    def _reindex(self, keys: list[tuple[str, ...]], children: list[Any]) -> None:
        known = dict(zip(self._keys, self._heads))
        self._keys, self._children = keys, children
        self._fast = all(isinstance(getattr(v, "_value", None), (int, float)) for v in children)
        self._heads = [known.get(k) or "{}_total{{{}}} ".format(
            self.name, ",".join(f'{n}="{escape_label(v)}"' for n, v in zip(self.labelnames, k))) for k in keys]
        self._numbers = [None] * len(keys)  # every line rewritten by the caller
        self._lines = _Lines(len(keys))
        self._parts = None


def take_groups(store: Any) -> dict[tuple[str, str], list[tuple[str, dict[int, int]]]]:
    """Each logstore's consumer groups with their checkpoint sequence numbers (as ``take_state``)."""
    groups: dict[tuple[str, str], list[tuple[str, dict[int, int]]]] = {}
    for project, name, group in store.group_keys():
        try:
            _, _, checkpoints = store.group_snapshot(project, name, group)
        except E.SLSError:  # deleted since the keys were taken
            continue
        groups.setdefault((project, name), []).append((group, {sid: cp.seq for sid, cp in checkpoints.items()}))
    return groups


class StateLines:
    """The five state families (the samples of ``state_text(take_state(store), members)``), kept between scrapes.

    The per-shard families hold one line per row of ``Store.shard_rows()``, in that order (series order within
    a family means nothing to Prometheus), each line its label text (cached by shard and status) plus its
    number. A scrape compares the new rows with the previous ones in one C-level list comparison and, when
    they differ, walks them once rewriting only the lines that changed; a row whose shard or status changed
    (a logstore created or deleted, a split) just gets its label text again. The consumer families are
    written per logstore that has groups, again only for logstores whose shards, groups or live consumers
    changed; the groups-per-logstore family per logstore. Not thread-safe: one scrape at a time (``HubMetrics``
    holds a lock)."""

    def __init__(self) -> None:
        self._rows: list[ShardRow] = []
        self._nbytes = _Lines()
        self._ngroups_retained = _Lines()
        self._heads: dict[tuple[str, str, int, str], tuple[str, str]] = {}  # shard -> its two families' labels
        self._idx: dict[tuple[str, str], list[int]] | None = None  # logstore -> its rows' places, when needed
        self._keys: list[tuple[str, str]] | None = None
        self._key_set: set[tuple[str, str]] = set()
        self._ngroups: dict[tuple[str, str], int] = {}
        self._groups: dict[tuple[str, str], list[tuple[str, dict[int, int]]]] = {}
        self._counts: dict[tuple[str, str], tuple[int, ...]] = {}
        self._consumer_text: dict[tuple[str, str], tuple[str, str]] = {}  # logstore -> (lag lines, consumer lines)
        self._tail: list[bytes | None] = [None, None, None]  # the lag, consumers and groups-per-logstore families
        self._headers = [f"# HELP {name} {help_text}\n# TYPE {name} gauge\n".encode() for name, help_text in _FAMILIES]
        self._parts: list[bytes] | None = None

    def parts(self, store: Any, members: Mapping[GroupKey, int]) -> list[bytes]:
        """The five families as chunks to join; the same list object while nothing changed."""
        keys = store.logstore_keys()
        _pause()  # between the phases: each holds the GIL for at most a few ms (module docstring of _pause)
        rows = store.shard_rows()
        _pause()
        groups = take_groups(store)
        counts = {k: tuple(members.get((k[0], k[1], g), 0) for g, _ in gl) for k, gl in groups.items()}
        _pause()
        touched = self._shard_lines(rows)
        _pause()
        self._logstore_lines(keys, groups)
        self._consumer_lines(rows, groups, counts, touched)
        if self._parts is None:
            for f in (2, 3):
                if self._tail[f - 2] is None:
                    lines = [self._consumer_text[k][f - 2] for k in groups if k in self._key_set]
                    self._tail[f - 2] = _family(*_FAMILIES[f], lines).encode()
            self._parts = [self._headers[0], *self._nbytes.encoded(), self._headers[1],
                           *self._ngroups_retained.encoded(), *self._tail]  # type: ignore[list-item]
        return self._parts

    def text(self, store: Any, members: Mapping[GroupKey, int]) -> bytes:
        return b"".join(self.parts(store, members))

    def _shard_lines(self, rows: list[ShardRow]) -> set[tuple[str, str]] | None:
        """Rewrite the lines of the rows that changed; the logstores they belong to (None: every logstore)."""
        old = self._rows
        if len(rows) != len(old):  # shards added or removed: every line afresh (labels from the cache)
            self._nbytes, self._ngroups_retained = _Lines(len(rows)), _Lines(len(rows))
            changed: Iterable[int] = range(len(rows))
            self._idx = None
            touched = None
        elif rows == old:
            return set()
        else:
            changed = [i for i, (new, was) in enumerate(zip(rows, old)) if new != was]
            touched = set()
        self._rows = rows
        self._parts = None
        if len(self._heads) > 2 * len(rows) + 1024:
            self._heads.clear()  # labels of deleted shards
        heads = self._heads
        blines, glines = self._nbytes.lines, self._ngroups_retained.lines
        bdirty, gdirty = self._nbytes.dirty, self._ngroups_retained.dirty
        for n, i in enumerate(changed):
            if n % 4096 == 4095:
                _pause()
            project, name, sid, status, nbytes, begin, end = rows[i]
            head = heads.get((project, name, sid, status))
            if head is None:
                base = f'project="{escape_label(project)}",logstore="{escape_label(name)}",shard="{sid}"'
                head = heads[(project, name, sid, status)] = (f'sluice_hub_shard_bytes{{{base},status="{status}"}} ',
                                                              f"sluice_hub_shard_log_groups{{{base}}} ")
            blines[i] = f"{head[0]}{nbytes}\n"
            glines[i] = f"{head[1]}{end - begin}\n"
            bdirty.add(i >> _SHIFT)
            gdirty.add(i >> _SHIFT)
            if touched is not None:
                if old[i][:3] != (project, name, sid):
                    self._idx, touched = None, None  # a shard moved: the logstores' row places change
                else:
                    touched.add((project, name))
        return touched

    def _logstore_lines(self, keys: list[tuple[str, str]], groups: dict[tuple[str, str], list[Any]]) -> None:
        """The groups-per-logstore family, one line per logstore (every logstore, with or without shards)."""
        ngroups = {k: len(gl) for k, gl in groups.items()}
        if keys == self._keys and ngroups == self._ngroups:
            return
        if keys != self._keys:
            self._keys, self._key_set = keys, set(keys)
            self._consumer_text.clear()  # a logstore gone or back: its consumer lines are written again
        self._ngroups = ngroups
        self._tail[2] = _family(*_FAMILIES[4], [
            f'sluice_hub_consumer_groups{{project="{escape_label(p)}",logstore="{escape_label(n)}"}} '
            f"{ngroups.get((p, n), 0)}\n" for p, n in keys]).encode()
        self._parts = None

    def _consumer_lines(self, rows: list[ShardRow], groups: dict[tuple[str, str], list[tuple[str, dict[int, int]]]],
                        counts: dict[tuple[str, str], tuple[int, ...]], touched: set[tuple[str, str]] | None) -> None:
        """Lag per (group, shard) and live consumers per group, per logstore with groups."""
        text = self._consumer_text
        redo = [k for k in groups if k not in text or (touched is None or k in touched)
                or groups[k] != self._groups.get(k) or counts[k] != self._counts.get(k)]
        gone = [k for k in text if k not in groups]
        self._groups, self._counts = groups, counts
        if not redo and not gone:
            return
        for k in gone:
            del text[k]
        if redo and self._idx is None:
            idx: dict[tuple[str, str], list[int]] = {}
            for i, row in enumerate(rows):
                idx.setdefault((row[0], row[1]), []).append(i)
            self._idx = idx
        for k in redo:
            shards = [rows[i][2:] for i in self._idx.get(k, ())]  # type: ignore[union-attr]
            chunks = _logstore_text(k[0], k[1], shards, groups[k], counts[k])  # type: ignore[arg-type]
            text[k] = (chunks[2], chunks[3])
        self._tail[0] = self._tail[1] = None
        self._parts = None
