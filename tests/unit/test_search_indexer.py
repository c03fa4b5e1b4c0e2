"""The background indexer (hub/query/indexer.py) over a real store on a temporary directory (no sockets):
it follows the shards from its checkpoint, resumes after a restart without duplicates, applies TTL
expiry, and drops the index when the config goes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sluice.hub.query.index import CONFIG_KEY, IndexSpec, validate
from sluice.hub.query.indexer import Indexer
from sluice.hub.query.search import parse_search
from sluice.hub.store.sqlite import SQLiteStore
from sluice.wire.loggroup import LogGroup

INDEX = validate({"line": {}, "keys": {"status": {"type": "long"}}})


def _wait(fut):  # type: ignore[no-untyped-def]
    return fut.result(timeout=10)


def _group(statuses: list[int], t: int) -> bytes:
    g = LogGroup(Topic="web")
    for s in statuses:
        log = g.Logs.add(Time=t)
        log.Contents.add(Key="status", Value=str(s))
        log.Contents.add(Key="msg", Value=f"request done {s}")
    return g.SerializeToString()


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = SQLiteStore(tmp_path / "data")
    _wait(s.create_project("proj", "", {}))
    _wait(s.create_logstore("proj", "web", 7, 2, {CONFIG_KEY: INDEX}))
    yield s
    s.close()


def _count(indexer: Indexer, query: str) -> int:
    spec = IndexSpec.from_config(INDEX)
    return indexer.index_for("proj", "web").search(parse_search(query), spec, 0, 2**31, None, 0, 0, False).processed


def test_follows_shards_resumes_and_expires(tmp_path: Path, store: SQLiteStore) -> None:
    now = int(time.time())
    for i in range(30):
        shard = store.get_shard("proj", "web", i % 2)
        _wait(store.append(shard, _group([200, 500, 200], now), 3))
    indexer = Indexer(store, tmp_path / "index")
    while indexer.run_pass():
        pass
    assert indexer.caught_up("proj", "web")
    assert _count(indexer, "*") == 90 and _count(indexer, "status: 500") == 30 and _count(indexer, "done") == 90
    # a restart: the index file holds its checkpoint; nothing is indexed twice, new data is picked up
    for idx in list(indexer._indexes.values()):
        idx.close()
    again = Indexer(store, tmp_path / "index")
    _wait(store.append(store.get_shard("proj", "web", 0), _group([404], now), 1))
    while again.run_pass():
        pass
    assert _count(again, "*") == 91 and _count(again, "status >= 404") == 31
    # TTL: the store expires old groups; the next pass deletes their rows
    for sid in (0, 1):
        _wait(store.expire(store.get_shard("proj", "web", sid), int((time.time() + 5) * 1000)))
    again.run_pass()
    assert _count(again, "*") == 0
    # the index config goes: the index file goes
    meta = store.get_logstore("proj", "web")
    _wait(store.update_logstore("proj", "web", meta.ttl, {}))
    again.run_pass()
    assert not again.path_for("proj", "web").exists()


def test_hub_check_covers_indexes(tmp_path: Path, store: SQLiteStore) -> None:
    from sluice.hub.store.check import check_data_dir

    _wait(store.append(store.get_shard("proj", "web", 0), _group([200], int(time.time())), 1))
    indexer = Indexer(store, tmp_path / "data" / "index")
    while indexer.run_pass():
        pass
    path = indexer.path_for("proj", "web")
    for idx in list(indexer._indexes.values()):
        idx.close()
    store.close()
    problems, _ = check_data_dir(tmp_path / "data")
    assert problems == []
    path.write_bytes(b"not a duckdb file" * 100)
    problems, _ = check_data_dir(tmp_path / "data")
    assert len(problems) == 1 and "search index" in problems[0] and "cannot be opened" in problems[0]


def test_orphan_index_files_are_removed_at_start(tmp_path: Path, store: SQLiteStore) -> None:
    orphan = tmp_path / "index" / "proj" / "gone.duckdb"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"x")
    Indexer(store, tmp_path / "index").run_pass()
    assert not orphan.exists()


def test_helper_process_builds_the_same_index(tmp_path: Path, store: SQLiteStore) -> None:
    now = int(time.time())
    for i in range(6):
        _wait(store.append(store.get_shard("proj", "web", i % 2), _group([200, 500], now), 2))
    indexer = Indexer(store, tmp_path / "index", helper=True)
    try:
        while indexer.run_pass():
            pass
        assert indexer._helper is not None and indexer._helper_wanted  # the helper did the work
        assert _count(indexer, "*") == 12 and _count(indexer, "status: 500 and done") == 6
    finally:
        if indexer._helper is not None:
            indexer._helper.shutdown()
        for idx in list(indexer._indexes.values()):
            idx.close()


def test_a_deleted_shard_leaves_the_index(tmp_path: Path, store: SQLiteStore) -> None:
    now = int(time.time())
    for sid in (0, 1):
        _wait(store.append(store.get_shard("proj", "web", sid), _group([200], now), 1))
    indexer = Indexer(store, tmp_path / "index")
    while indexer.run_pass():
        pass
    assert _count(indexer, "*") == 2
    _wait(store.split_shard("proj", "web", 0, (1 << 126)))  # shard 0 becomes readonly
    _wait(store.delete_shard("proj", "web", 0))
    indexer.run_pass()
    assert _count(indexer, "*") == 1
    for idx in list(indexer._indexes.values()):
        idx.close()


# ---------------------------------------------------------------- the C insert-text builder (_indexrows.c)
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from sluice.hub.query import batch  # noqa: E402


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(num: int, payload: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _wire_group(logs: list[tuple[int, list[tuple[bytes, bytes]]]], topic: bytes | None, source: bytes | None,
                tags: list[tuple[bytes, bytes]]) -> bytes:
    """A LogGroup written by hand, so keys and values can be any bytes (not UTF-8, separators, NUL)."""
    out = b""
    for t, contents in logs:
        body = _varint(1 << 3) + _varint(t) + b"".join(_field(2, _field(1, k) + _field(2, v)) for k, v in contents)
        out += _field(1, body)
    if topic is not None:
        out += _field(3, topic)
    if source is not None:
        out += _field(4, source)
    return out + b"".join(_field(6, _field(1, k) + _field(2, v)) for k, v in tags)


# bytes that exercise every decline of the C builder: separators, NUL, the "missing" mark, broken and
# valid multi-byte UTF-8, surrogates, meta key names and key reuse
_ATOMS = [b"a", b"status", b"200", b"x y", b"", b"\x1e", b"\x1f", b"\x00", b"\x02", b"\xff", b"\xc3\xa9", b"\xe2\x82",
          b"\xed\xa0\x80", b"\xf0\x9f\x98\x80", b"__time__", b"__topic__", b"__tag__:h", b"method", b"\xc0\xaf"]
_CLEAN = [b"a", b"status", b"200", b"x y", b"", b"\xc3\xa9", b"\xf0\x9f\x98\x80", b"method", b"\x01"]


def _groups(atoms: list[bytes]) -> st.SearchStrategy[list[bytes]]:
    text = st.lists(st.sampled_from(atoms), max_size=3).map(b"".join)
    keys = st.sampled_from([b"status", b"method", b"msg", b"k\xc3\xa9y"]) | text
    log = st.tuples(st.integers(0, 2**32 - 1), st.lists(st.tuples(keys, text), max_size=4))
    group = st.builds(_wire_group, st.lists(log, max_size=4), st.none() | text, st.none() | text,
                      st.lists(st.tuples(keys, text), max_size=2))
    return st.lists(group, max_size=4)


_BODIES = st.sampled_from([_CLEAN, _ATOMS]).flatmap(_groups)  # half of them clean: the C builder's own case
_NAMES = st.lists(st.sampled_from(["status", "method", "msg", "kéy", "__topic__", "__source__", "__tag__:h",
                                   "__tag__:status", "__time__", "nokey"]), max_size=4, unique=True)


@pytest.mark.skipif(batch.build_text_c is None, reason="the C builder is not compiled here")
@settings(max_examples=400, deadline=None)
@given(_BODIES, st.integers(0, 2**40), _NAMES, st.integers(0, 3))
def test_c_builder_equals_the_python_path(groups: list[bytes], first: int, names: list[str], cut: int) -> None:
    """Whatever the stored bytes: the C builder's text is exactly the Python path's, or it declines (None)
    and the Python path decides; a truncated body never crashes it."""
    body = b"".join(_field(1, g) for g in groups)
    if cut:
        body = body[:len(body) * cut // 4]
    assert batch.build_text_c is not None
    got = batch.build_text_c(body, first, names)
    try:
        want = batch.build_from_body_py(body, first, names)
    except Exception:  # noqa: BLE001 - a malformed list: the Python path raises, the C builder must decline
        assert got is None
        return
    if got is not None:
        assert got == want
    assert batch.build_from_body(body, first, names) == want


@pytest.mark.skipif(batch.build_text_c is None, reason="the C builder is not compiled here")
def test_c_builder_takes_the_common_case() -> None:
    """Plain UTF-8 logs (the bench's shape, tags, a key some logs lack, unknown fields) are built in C."""
    g = LogGroup(Topic="nginx", Source="10.0.0.1")
    g.LogTags.add(Key="host", Value="h1")
    for i in range(50):
        log = g.Logs.add(Time=1_700_000_000 + i)
        log.Contents.add(Key="status", Value=str(200 + i % 3))
        log.Contents.add(Key="path", Value=f"/api/é/{i}")
        if i % 2:
            log.Contents.add(Key="extra", Value="x" * i)
    body = _field(1, g.SerializeToString()) + _varint(2 << 3) + _varint(7) + _field(1, g.SerializeToString())
    names = ["status", "extra", "__topic__", "__tag__:host", "nokey"]
    got = batch.build_text_c(body, 41, names)  # type: ignore[misc]
    assert got is not None and got == batch.build_from_body_py(body, 41, names) and got[1] == 100
    first = got[0].split(batch.RS)[1].split(batch.US)
    assert first[:8] == ["41", "1", "1700000001", "nginx", "10.0.0.1", "host\x00h1",
                         "status\x00201\x00path\x00/api/é/1\x00extra\x00x", "201"]
    assert first[8:] == ["x", "nginx", "h1", "\x02"]
    assert batch.build_text_c(b"", 0, names) is None  # no record: the Python path's answer too
    assert batch.build_text_c(body, 0, ["__time__"]) is None  # an int in the dict: the Python path gives up


@pytest.mark.skipif(batch.build_text_c is None, reason="the C builder is not compiled here")
def test_c_builder_on_large_bodies_built_without_the_gil() -> None:
    """Bodies of 16 KiB and more are walked with the GIL released: same answers, cut anywhere."""
    g = LogGroup(Topic="t")
    for i in range(200):
        log = g.Logs.add(Time=i)
        log.Contents.add(Key="k", Value=f"value {i} " * 3)
    body = b"".join(_field(1, g.SerializeToString()) for _ in range(4))
    assert len(body) > 16 << 10
    names = ["k"]
    got = batch.build_text_c(body, 3, names)  # type: ignore[misc]
    assert got is not None and got == batch.build_from_body_py(body, 3, names) and got[1] == 800
    for cut in (17 << 10, len(body) - 1, len(body) // 2 + 7):
        part = body[:cut]
        try:
            want = batch.build_from_body_py(part, 3, names)
        except Exception:  # noqa: BLE001 - the list itself is cut: the C builder declines
            want = None
        c = batch.build_text_c(part, 3, names)  # type: ignore[misc]
        assert c is None or c == want
