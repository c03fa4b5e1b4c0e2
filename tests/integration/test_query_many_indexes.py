"""More indexed logstores than open index files (#21, ``--max-open-indexes``): the indexer and the queries share
a bounded set of open DuckDB files (hub/query/indexer.py, least recently used closed first).

The first tests drive the Indexer over a real store on a temporary directory (no sockets) to pin the lease
rules; the last one runs a real hub with the cap at 3 and 8 indexed logstores written and searched at once,
counts the hub's open ``.duckdb`` descriptors in /proc the whole time, kills it with SIGKILL in the middle and
checks every logstore's results against what was written (no duplicate, no gap)."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aliyun.log import IndexConfig, IndexKeyConfig, IndexLineConfig, LogItem, PutLogsRequest

from sluice.hub.query.index import CONFIG_KEY, IndexSpec, validate
from sluice.hub.query.indexer import Indexer
from sluice.hub.query.search import parse_search
from sluice.hub.store.sqlite import SQLiteStore
from sluice.wire import errors as E
from sluice.wire.loggroup import LogGroup

NOW = int(time.time())
INDEX = validate({"line": {"token": [" "]}, "keys": {"status": {"type": "long"}, "method": {"type": "text"},
                                                      "n": {"type": "text"}}})


def _wait(fut: Any) -> Any:
    return fut.result(timeout=10)


def _group(rows: list[tuple[int, str, str]]) -> bytes:
    g = LogGroup()
    for status, method, n in rows:
        log = g.Logs.add()
        log.Time = NOW
        for k, v in (("status", str(status)), ("method", method), ("n", n)):
            log.Contents.add(Key=k, Value=v)
    return g.SerializeToString()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "data")
    _wait(s.create_project("proj", "", {}))
    for k in range(5):
        _wait(s.create_logstore("proj", f"ls{k}", 7, 2, {CONFIG_KEY: INDEX}))
    yield s
    s.close()


def _fill(store: SQLiteStore, k: int, count: int, tag: str) -> None:
    for i in range(count):
        shard = store.get_shard("proj", f"ls{k}", i % 2)
        _wait(store.append(shard, _group([(500 if i % 3 == 0 else 200, "POST", f"{tag}-{k}-{i}")]), 1))


def _count(idx: Any, query: str) -> int:
    spec = IndexSpec.from_config(INDEX)
    return idx.search(parse_search(query), spec, 0, 2**31, None, 0, 0, False).processed


def _close_all(indexer: Indexer) -> None:
    for idx in list(indexer._indexes.values()):
        idx.close()


def test_more_logstores_than_open_indexes(store: SQLiteStore, tmp_path: Path) -> None:
    indexer = Indexer(store, tmp_path / "index", max_open=2)
    try:
        for k in range(5):
            _fill(store, k, 12, "a")
        while indexer.run_pass():
            assert indexer.open_count() <= 2
        assert indexer.open_count() <= 2 and indexer.opened >= 5
        for k in range(5):
            assert indexer.caught_up("proj", f"ls{k}")
            with indexer.lease("proj", f"ls{k}") as idx:
                assert _count(idx, "*") == 12 and _count(idx, "status: 500") == 4
            assert indexer.open_count() <= 2
        # idle logstores closed by the bound are not reopened by a pass: nothing new, nothing opened
        opened = indexer.opened
        for _ in range(3):
            indexer.run_pass()
        assert indexer.opened == opened
        # new data on one closed logstore reopens just that one, and exactly the new rows are indexed
        assert ("proj", "ls0") not in indexer._indexes
        _fill(store, 0, 3, "b")
        while indexer.run_pass():
            pass
        assert indexer.opened == opened + 1 and indexer.open_count() <= 2
        with indexer.lease("proj", "ls0") as idx:
            assert _count(idx, "*") == 15 and _count(idx, "n: b*") == 3
    finally:
        _close_all(indexer)


def test_an_index_in_use_is_never_closed(store: SQLiteStore, tmp_path: Path) -> None:
    indexer = Indexer(store, tmp_path / "index", max_open=2)
    try:
        for k in range(5):
            _fill(store, k, 4, "a")
        with indexer.lease("proj", "ls0") as held:
            while indexer.run_pass():  # every other logstore goes through the one remaining slot
                assert indexer.open_count() <= 2
            assert not held.closed and _count(held, "*") == 4
            for k in range(1, 5):
                assert indexer.caught_up("proj", f"ls{k}")
                assert not held.closed
            # both slots held: a third lease waits, then gets ServerBusy (never a third open file)
            with indexer.lease("proj", "ls1"):
                t0 = time.monotonic()
                with pytest.raises(E.ServerBusy):
                    with indexer.lease("proj", "ls2", wait=0.3):
                        pass
                assert time.monotonic() - t0 >= 0.25 and indexer.open_count() == 2
            # a lease returned while another waits lets it in
            got: list[bool] = []
            with indexer.lease("proj", "ls1"):
                waiter = threading.Thread(target=lambda: got.append(
                    _count(indexer.index_for("proj", "ls3"), "*") == 4))
                waiter.start()
                time.sleep(0.2)
                assert not got and waiter.is_alive()
            waiter.join(10)
            assert got == [True] and not held.closed
    finally:
        _close_all(indexer)


def test_concurrent_leases_stay_under_the_cap(store: SQLiteStore, tmp_path: Path) -> None:
    indexer = Indexer(store, tmp_path / "index", max_open=3)
    for k in range(5):
        _fill(store, k, 6, "a")
    while indexer.run_pass():
        pass
    peak = [0]
    errors: list[BaseException] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _duckdb_fds(os.getpid()))
            time.sleep(0.001)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(30):
                with indexer.lease("proj", f"ls{rng.randrange(5)}") as idx:
                    assert not idx.closed and _count(idx, "status: 500") == 2
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    sampler = threading.Thread(target=sample)
    sampler.start()
    threads = [threading.Thread(target=worker, args=(s,)) for s in range(6)]
    try:
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            indexer.run_pass()
            time.sleep(0.01)
        for t in threads:
            t.join()
    finally:
        stop.set()
        sampler.join()
        _close_all(indexer)
    assert not errors, errors[0]
    assert 1 <= peak[0] <= 3, peak[0]


# ------------------------------------------------------------------ a real hub


def _duckdb_fds(pid: int) -> int:
    n = 0
    try:
        entries = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0
    for fd in entries:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").endswith(".duckdb"):
                n += 1
        except OSError:
            pass
    return n


def _index_config() -> IndexConfig:
    keys = {"status": IndexKeyConfig(index_type="long"), "method": IndexKeyConfig(index_type="text"),
            "n": IndexKeyConfig(index_type="text")}
    return IndexConfig(line_config=IndexLineConfig(token_list=[" "]), key_config_list=keys)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc (Linux)")
def test_a_hub_with_more_indexed_logstores_than_open_indexes(tmp_path: Path) -> None:
    from aliyun.log import LogClient

    from sluice.testing import HubProcess

    CAP, STORES = 3, 8
    names = [f"ls{k}" for k in range(STORES)]
    written: dict[str, list[tuple[str, int, str]]] = {n: [] for n in names}  # (n, status, method) acknowledged
    with HubProcess(tmp_path / "data", extra_args=["--max-open-indexes", str(CAP)]) as proc:
        sdk = LogClient(proc.endpoint, proc.access_key_id, proc.access_key_secret)
        sdk.create_project("many", "")
        for name in names:
            sdk.create_logstore("many", name, shard_count=2)
            sdk.create_index("many", name, _index_config())
        peak = [0]
        samples = [0]
        stop = threading.Event()
        failures: list[BaseException] = []

        def sample() -> None:
            while not stop.is_set():
                if proc.proc is not None and proc.proc.poll() is None:
                    peak[0] = max(peak[0], _duckdb_fds(proc.proc.pid))
                    samples[0] += 1
                time.sleep(0.002)

        def write(rounds: int, tag: str, seed: int) -> None:
            rng = random.Random(seed)
            for r in range(rounds):
                for name in names:
                    rows = [(f"{tag}{seed}-{r}-{j}", rng.choice([200, 404, 500]), rng.choice(["GET", "POST"]))
                            for j in range(rng.randint(1, 20))]
                    items = []
                    for n, status, method in rows:
                        item = LogItem(timestamp=NOW)
                        item.set_contents([("n", n), ("status", str(status)), ("method", method)])
                        items.append(item)
                    sdk.put_logs(PutLogsRequest("many", name, "", "", items))
                    written[name].extend(rows)  # acknowledged: must be found exactly once

        def search(seed: int) -> None:
            rng = random.Random(seed)
            client = LogClient(proc.endpoint, proc.access_key_id, proc.access_key_secret)
            try:
                while not stop.is_set():
                    name = rng.choice(names)
                    resp = client.get_log("many", name, NOW - 60, NOW + 60,
                                          query="status: 500 and method: POST | select count(*) as c")
                    assert int(resp.get_logs()[0].get_contents()["c"]) >= 0
                    client.get_histograms(_histograms("many", name, "method: GET"))
            except Exception as exc:  # noqa: BLE001 - a query error while the hub is up is a failure
                if not stop.is_set():
                    failures.append(exc)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            # phase 1: writes and searches at once, on every logstore, through 3 open index files
            searchers = [threading.Thread(target=search, args=(s,), daemon=True) for s in range(3)]
            for t in searchers:
                t.start()
            writers = [threading.Thread(target=write, args=(6, "a", s)) for s in range(2)]
            for t in writers:
                t.start()
            for t in writers:
                t.join()
            stop.set()
            for t in searchers:
                t.join(60)
            assert not failures, failures[0]
            # phase 2: SIGKILL while the indexer is catching up (the last writes are seconds old at most)
            stop.clear()
            write(2, "b", 7)
            proc.kill()
            proc.start()
            sdk = LogClient(proc.endpoint, proc.access_key_id, proc.access_key_secret)
            searchers = [threading.Thread(target=search, args=(s,), daemon=True) for s in range(10, 12)]
            for t in searchers:
                t.start()
            write(3, "c", 9)
            deadline = time.monotonic() + 60
            for name in names:
                while True:
                    got = _sql(sdk, name, "* | select count(*) as c")
                    if got >= len(written[name]) or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
            time.sleep(1.0)  # a duplicate re-index would show up by now
            stop.set()
            for t in searchers:
                t.join(60)
            assert not failures, failures[0]
            # every logstore: exactly what was acknowledged, by SQL and by search (brute force beside)
            for name in names:
                rows = written[name]
                total = _sql_row(sdk, name, "* | select count(*) as c, count(distinct n) as d")
                assert (int(total["c"]), int(total["d"])) == (len(rows), len(rows)), name
                want = sorted(n for n, status, method in rows if status == 500 and method == "POST")
                resp = sdk.get_log("many", name, NOW - 60, NOW + 60,
                                   query="status: 500 and method: POST | select n order by n limit 100000")
                assert sorted(r.get_contents()["n"] for r in resp.get_logs()) == want, name
                hist = sdk.get_histograms(_histograms("many", name, "method: GET and not status: 404"))
                assert hist.get_total_count() == sum(1 for _, s, m in rows if m == "GET" and s != 404), name
        finally:
            stop.set()
            sampler.join(5)
        assert samples[0] > 100 and peak[0] >= 1
        assert peak[0] <= CAP, f"{peak[0]} index files open at once with --max-open-indexes {CAP}"


def _histograms(project: str, logstore: str, query: str) -> Any:
    from aliyun.log import GetHistogramsRequest

    return GetHistogramsRequest(project, logstore, NOW - 60, NOW + 60, "", query)


def _sql_row(sdk: Any, logstore: str, query: str) -> dict[str, str]:
    resp = sdk.get_log("many", logstore, NOW - 60, NOW + 60, query=query)
    return dict(resp.get_logs()[0].get_contents())


def _sql(sdk: Any, logstore: str, query: str) -> int:
    return int(_sql_row(sdk, logstore, query)["c"])
