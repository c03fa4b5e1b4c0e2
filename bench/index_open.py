"""What an open search index costs and what reopening one costs (#21, ``--max-open-indexes``): the figures the
default bound is chosen from (docs/query.md, "Many indexes").

* per open index (one DuckDB instance on one logstore's file, hub/query/engine.py): descriptors, threads and
  resident memory it adds to the process, idle just after opening and after a search over all of its rows
  (DuckDB keeps what it read in its buffer pool, up to engine.MEMORY_LIMIT); threads also with DuckDB's own
  default of asynchronous I/O threads (what the index had before ``async_threads`` 0), in the same run
* opening and closing one: wall ms (median of the files), and the first search after opening (cold) against
  the same search on an open index (warm); memory also after a full-text search (reads every row's text)
* the bound's price in the indexer: process CPU ms per indexing pass over 16 indexed logstores that all got a
  small group since the last pass, with the bound at 4 (every pass reopens 12+) and at 64 (all stay open),
  alternated; and idle passes (nothing new: closed indexes stay closed)

No hub process: the engine and the indexer over a real store in this process (CPU of this process is what
they cost). Usage: python bench/index_open.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import report  # noqa: E402

from sluice.hub.query import engine  # noqa: E402
from sluice.hub.query.engine import IndexStore  # noqa: E402
from sluice.hub.query.index import CONFIG_KEY, IndexSpec, validate  # noqa: E402
from sluice.hub.query.indexer import Indexer  # noqa: E402
from sluice.hub.query.search import parse_search  # noqa: E402
from sluice.hub.store.sqlite import SQLiteStore  # noqa: E402
from sluice.wire.loggroup import LogGroup  # noqa: E402

INDEX = validate({"line": {"token": [" "]}, "keys": {"status": {"type": "long"}, "method": {"type": "text"},
                                                      "path": {"type": "text"}}})
SPEC = IndexSpec.from_config(INDEX)


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _rss_mb() -> float:
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _rows(n: int, seq0: int) -> list[tuple[int, int, dict[str, str]]]:
    return [(seq0 + q // 100, q % 100, {"__time__": str(1700000000 + q), "status": ("500" if q % 7 == 0 else "200"),
                                        "method": "POST" if q % 3 == 0 else "GET",
                                        "path": f"/api/v1/items/{q % 5000}", "msg": f"request {q} done in {q % 97} ms"})
            for q in range(n)]


def engine_costs(root: Path, files: int, rows: int) -> dict[str, float]:
    paths = [root / f"r{rows}" / f"ls{k}.duckdb" for k in range(files)]
    for p in paths:
        s = IndexStore(p)
        s.ensure_keys(SPEC)
        s.ingest(1, 0, _rows(rows, 0), rows // 100 + 1)
        s.close()
    node = parse_search("status: 500 and method: POST")
    f0, r0, t0 = _fds(), _rss_mb(), _threads()
    opened, open_ms = [], []
    for p in paths:
        a = time.perf_counter()
        opened.append(IndexStore(p))
        open_ms.append((time.perf_counter() - a) * 1000)
    f1, r1, t1 = _fds(), _rss_mb(), _threads()
    cold, warm = [], []
    for s in opened:
        a = time.perf_counter()
        n = s.search(node, SPEC, 0, 2**31, None, 0, 100, False).processed
        cold.append((time.perf_counter() - a) * 1000)
        a = time.perf_counter()
        s.search(node, SPEC, 0, 2**31, None, 0, 100, False)
        warm.append((time.perf_counter() - a) * 1000)
        assert n > 0
    r2 = _rss_mb()
    for s in opened:  # full text: reads every row's line (the widest column)
        assert s.search(parse_search("done"), SPEC, 0, 2**31, None, 0, 100, False).processed == rows
    r4 = _rss_mb()
    for s in opened:  # a write: the WAL is opened too
        s.ingest(2, 1, _rows(10, 10**6), 10**6)
    f3 = _fds()
    close_ms = []
    for s in opened:
        a = time.perf_counter()
        s.close()
        close_ms.append((time.perf_counter() - a) * 1000)
    return {"rows_per_index": rows, "indexes": files, "open_ms": statistics.median(open_ms),
            "close_ms_after_write": statistics.median(close_ms), "first_search_ms": statistics.median(cold),
            "warm_search_ms": statistics.median(warm), "fds_each_idle": (f1 - f0) / files,
            "fds_each_after_write": (f3 - f0) / files, "threads_each": (t1 - t0) / files,
            "rss_mb_each_idle": (r1 - r0) / files, "rss_mb_each_after_search": (r2 - r0) / files,
            "rss_mb_each_after_full_text": (r4 - r0) / files}


def default_threads(root: Path) -> float:
    """Threads per open index with DuckDB's own async_threads (8 in DuckDB 2.0; none before)."""
    saved = engine._NO_ASYNC
    engine._NO_ASYNC = {}
    try:
        t0 = _threads()
        stores = [IndexStore(root / "thr" / f"ls{k}.duckdb") for k in range(4)]
        t1 = _threads()
        for s in stores:
            s.close()
    finally:
        engine._NO_ASYNC = saved
    return (t1 - t0) / 4


def _group(k: int, i: int) -> bytes:
    g = LogGroup()
    for j in range(20):
        log = g.Logs.add()
        log.Time = 1700000000 + i
        for key, v in (("status", "500" if j % 7 == 0 else "200"), ("method", "GET"), ("path", f"/p/{k}/{i}/{j}")):
            log.Contents.add(Key=key, Value=v)
    return g.SerializeToString()


def pass_costs(root: Path, rounds: int) -> list[dict[str, float]]:
    store = SQLiteStore(root / "data")
    stores = 16
    store.create_project("p", "", {}).result(10)
    for k in range(stores):
        store.create_logstore("p", f"ls{k}", 7, 1, {CONFIG_KEY: INDEX}).result(10)
    indexers = {cap: Indexer(store, root / f"index-{cap}", max_open=cap) for cap in (4, 64)}
    busy: dict[int, list[float]] = {4: [], 64: []}
    idle: dict[int, list[float]] = {4: [], 64: []}
    try:
        for i in range(rounds):
            for k in range(stores):
                store.append(store.get_shard("p", f"ls{k}", 0), _group(k, i), 20).result(10)
            for cap in ((4, 64) if i % 2 else (64, 4)):  # alternated
                ix = indexers[cap]
                a = time.process_time()
                while ix.run_pass():
                    pass
                busy[cap].append((time.process_time() - a) * 1000)
                a = time.process_time()
                ix.run_pass()
                idle[cap].append((time.process_time() - a) * 1000)
        out = []
        for cap, ix in indexers.items():
            assert all(ix.caught_up("p", f"ls{k}") for k in range(stores))
            out.append({"max_open": cap, "logstores": stores,
                        "cpu_ms_per_pass_all_written": statistics.median(busy[cap][1:]),
                        "cpu_ms_per_idle_pass": statistics.median(idle[cap][1:]), "opens": ix.opened})
        return out
    finally:
        for ix in indexers.values():
            for idx in list(ix._indexes.values()):
                idx.close()
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small files, few rounds (CI smoke)")
    args = ap.parse_args()
    sizes = [(8, 10_000)] if args.quick else [(8, 10_000), (4, 300_000)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows: list[dict[str, object]] = [engine_costs(root, files, n) for files, n in sizes]
        duck_threads = default_threads(root)
        passes = pass_costs(root, 5 if args.quick else 21)
    for r in rows:
        r["threads_each_duckdb_default"] = duck_threads
    big = rows[-1]
    summary = (f"open {big['open_ms']:.1f} ms, close {big['close_ms_after_write']:.1f} ms "
               f"({big['rows_per_index']} rows); each open index {big['fds_each_after_write']:.0f} fds, "
               f"{big['threads_each']:.0f} threads (DuckDB default {duck_threads:.0f}), "
               f"{big['rss_mb_each_idle']:.1f} MB idle / {big['rss_mb_each_after_search']:.1f} MB after a search, "
               f"{big['rss_mb_each_after_full_text']:.1f} after a full-text one; "
               f"pass over 16 written logstores {passes[0]['cpu_ms_per_pass_all_written']:.0f} ms CPU at cap 4 vs "
               f"{passes[1]['cpu_ms_per_pass_all_written']:.0f} at 64 (shared machine)")
    report("index_open", rows, summary=summary, extra={"passes": passes})
    print()
    for p in passes:
        print("  ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in p.items()))


if __name__ == "__main__":
    main()
