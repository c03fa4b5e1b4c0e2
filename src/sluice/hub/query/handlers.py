"""HTTP handlers of the query APIs: CreateIndex/GetIndex/UpdateIndex/DeleteIndex, GetLogs (v1 ``GET
/logstores/{ls}?type=log`` and v2 ``POST /logstores/{ls}/logs``) and GetHistograms, in SLS's shapes.

Each handler takes the hub (its store, indexer, reader executor) and the decoded request; the work runs on
threads, never on the event loop. A logstore with an index is searched in its DuckDB file (engine.py); one
without is searched by scanning its shards (bounded by :data:`MAX_SCAN_BYTES`, reported as an incomplete
``progress`` beyond), and SQL on it is refused with SLS's ``IndexConfigNotExist``.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import os
import time
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from aiohttp import web

from ...wire import errors as E
from ...wire.loggroup import split_groups
from .engine import QueryResult
from .index import CONFIG_KEY, IndexSpec, index_error, validate
from .indexer import DEFAULT_MAX_OPEN, Indexer, _decode
from .search import Node, parse_search, row_matcher, split_query

__all__ = ["QueryService", "index_route", "get_logs", "get_histograms", "query_logs", "histograms", "MAX_SCAN_BYTES", "MAX_LINES",
           "histogram_step", "ROUTE_HANDLERS"]

MAX_SCAN_BYTES = 256 << 20
"""Most raw bytes one search of a logstore without an index reads; beyond, the answer is 'Incomplete'."""
MAX_LINES = 100
"""Most logs one GetLogs page returns (SLS: 100; the SDK pages for more)."""
_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800,
          604800, 2592000, 31536000)
MAX_BUCKETS = 60


class QueryService:
    """What the query handlers use: the store, the indexer, the reader threads. The hub owns one, starts it
    with the event loop (``start``), registers ``notify`` as a store commit listener and stops it last."""

    def __init__(self, store: Any, index_root: Path, executor: Executor, max_pull_bytes: int,
                 max_open_indexes: int = DEFAULT_MAX_OPEN) -> None:
        self.store = store
        self.executor = executor
        # SLUICE_INDEX_HELPER=1 moves decoding to a helper process; off by default: on the 2-core bench machine
        # it did not lower index lag or raise catch-up throughput (bench/query.py --lag-only compares both)
        helper = os.environ.get("SLUICE_INDEX_HELPER", "0") == "1"
        self.indexer = Indexer(store, index_root, max_pull_bytes, helper=helper, max_open=max_open_indexes)

    def start(self) -> None:
        self.indexer.start()

    def notify(self, uids: Any = None) -> None:
        self.indexer.notify(uids)

    async def stop(self) -> None:
        await self.indexer.stop()


def _json(data: Any, headers: dict[str, str] | None = None) -> web.Response:
    resp = web.Response(body=json.dumps(data, ensure_ascii=False).encode(), headers=headers)
    resp.headers["Content-Type"] = "application/json"
    return resp


def _leased(hub: Any, project: str, ls: str, method: str, *args: Any) -> Any:
    """Run one IndexStore method under a lease of the logstore's index (a reader thread: opening the file,
    or waiting for one of the bounded open indexes, never blocks the event loop)."""
    with hub.indexer.lease(project, ls) as idx:
        return getattr(idx, method)(*args)


def _spec(hub: Any, project: str, ls: str) -> tuple[Any, IndexSpec | None]:
    meta = hub.store.get_logstore(project, ls)
    return meta, IndexSpec.from_config(meta.config.get(CONFIG_KEY))


# ------------------------------------------------------------------ index config


async def index_route(hub: Any, project: str, ls: str, req: Any) -> web.StreamResponse:
    meta = hub.store.get_logstore(project, ls)
    current = meta.config.get(CONFIG_KEY)
    if req.method == "GET":
        if not current:
            raise index_error("IndexConfigNotExist", f"logstore {ls} has no index config", 404)
        return _json({**current, "ttl": meta.ttl, "lastModifyTime": meta.last_modify_time, "index_mode": "v2"})
    if req.method in ("POST", "PUT"):
        body = validate(req.json())
        if req.method == "POST" and current:
            raise index_error("IndexAlreadyExist", f"logstore {ls} already has an index; use UpdateIndex")
        if req.method == "PUT" and not current:
            raise index_error("IndexConfigNotExist", f"logstore {ls} has no index config to update", 404)
        config = dict(meta.config)
        config[CONFIG_KEY] = body
        await asyncio.wrap_future(hub.store.update_logstore(project, ls, meta.ttl, config))
        hub.indexer.notify()
        return web.Response()
    if req.method == "DELETE":
        if not current:
            raise index_error("IndexConfigNotExist", f"logstore {ls} has no index config", 404)
        config = {k: v for k, v in meta.config.items() if k != CONFIG_KEY}
        await asyncio.wrap_future(hub.store.update_logstore(project, ls, meta.ttl, config))
        await asyncio.get_running_loop().run_in_executor(hub.indexer._thread, hub.indexer.drop, project, ls)
        return web.Response()
    raise E.RouteNotFound(f"no API at {req.method} {req.path}")


# ------------------------------------------------------------------ GetLogs


def _int(params: dict[str, Any], name: str, default: int | None = None) -> int:
    value = params.get(name)
    if value is None or value == "":
        if default is None:
            raise E.ParameterInvalid(f"parameter {name} is required")
        return default
    if isinstance(value, bool):
        raise E.ParameterInvalid(f"parameter {name} must be an integer, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise E.ParameterInvalid(f"parameter {name} must be an integer, got {value!r}") from None


def _bool(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _query_params(params: dict[str, Any]) -> tuple[int, int, str, str | None, int, int, bool]:
    start, end = _int(params, "from"), _int(params, "to")
    if end < start:
        raise E.ParameterInvalid(f"from ({start}) must not be after to ({end})")
    line = _int(params, "line", MAX_LINES)
    offset = _int(params, "offset", 0)
    if line < 0 or offset < 0:
        raise E.ParameterInvalid("line and offset must be >= 0")
    query = params.get("query") or ""
    if not isinstance(query, str):
        raise E.ParameterInvalid("query must be a string")
    topic = params.get("topic") or None
    return start, end, query, topic if isinstance(topic, str) else None, min(line, MAX_LINES), offset, \
        _bool(params.get("reverse"))


async def query_logs(hub: Any, project: str, ls: str, start: int, end: int, query: str, topic: str | None,
                     offset: int, line: int, reverse: bool) -> tuple[QueryResult, str, str, str | None]:
    """Run a GetLogs query: (result, progress, search part, SQL part or None). Used by the API and the console."""
    search_text, sql = split_query(query)
    node = parse_search(search_text)
    meta, spec = _spec(hub, project, ls)
    loop = asyncio.get_running_loop()
    progress = "Complete"
    if spec is None:
        if sql is not None:
            raise index_error("IndexConfigNotExist",
                              f"logstore {ls} has no index config: analytic (SQL) queries need an index")
        result, complete = await loop.run_in_executor(hub.executor, scan, hub, meta, node, start, end, topic,
                                                      offset, line, reverse)
        progress = "Complete" if complete else "Incomplete"
    else:
        if sql is not None:
            result = await loop.run_in_executor(hub.executor, _leased, hub, project, ls, "analyze", node, spec,
                                                start, end, topic, sql)
        else:
            result = await loop.run_in_executor(hub.executor, _leased, hub, project, ls, "search", node, spec,
                                                start, end, topic, offset, line, reverse, False)
    return result, progress, search_text, sql


async def get_logs(hub: Any, project: str, ls: str, req: Any, v2: bool) -> web.StreamResponse:
    params: dict[str, Any] = req.json() if v2 else dict(req.params)
    if not isinstance(params, dict):
        raise E.ParameterInvalid("the GetLogs body must be a JSON object")
    start, end, query, topic, line, offset, reverse = _query_params(params)
    result, progress, search_text, sql = await query_logs(hub, project, ls, start, end, query, topic, offset, line,
                                                          reverse)
    info = {"progress": progress, "count": result.count, "processedRows": result.processed,
            "elapsedMillisecond": result.elapsed_ms, "hasSQL": sql is not None, "whereQuery": search_text or "*",
            "aggQuery": sql or "", "cpuSec": round(result.elapsed_ms / 1000, 3), "cpuCores": 1, "keys": result.keys,
            "terms": [], "limited": 0, "mode": 0, "isAccurate": True, "powerSql": False}
    if v2:
        return _json({"meta": info, "data": result.rows})
    headers = {"x-log-progress": progress, "x-log-count": str(result.count),
               "x-log-processed-rows": str(result.processed), "x-log-elapsed-millisecond": str(result.elapsed_ms),
               "x-log-has-sql": "true" if sql is not None else "false", "x-log-where-query": search_text or "*",
               "x-log-agg-query": sql or ""}
    return _json(result.rows, headers)


def scan(hub: Any, meta: Any, node: Node, start: int, end: int, topic: str | None, offset: int, line: int,
         reverse: bool, histogram_step: int | None = None) -> tuple[Any, bool]:
    """Search a logstore without an index by reading its shards (reader thread). Returns (QueryResult or
    bucket counts, complete)."""
    t0 = time.monotonic()
    match = row_matcher(node, None)
    store = hub.store
    shards = store.shards_of(meta.project, meta.name)  # a snapshot, sorted by shard id
    want = offset + line
    best: list[tuple[Any, ...]] = []  # heap of the first/last `want` matches in time order
    buckets: dict[int, int] = {}
    matched = scanned = 0
    complete = True
    for shard in shards:
        # receive time bounds the groups worth reading; an hour of slack for logs stamped before arrival
        seq = store.seq_at_time(shard, max(0, start - 3600) * 1000)
        stop = store.seq_at_time(shard, (end + 3600) * 1000) if end + 3600 < time.time() else shard.end_seq
        while seq < stop:
            if scanned >= MAX_SCAN_BYTES:
                complete = False
                break
            result = store.read(shard, seq, 1000, 4 << 20, stop)
            if not result.count:
                break
            scanned += len(result.body)
            first = result.next_seq - result.count
            for k, group in enumerate(split_groups(result.body)):
                try:
                    logs = _decode(group)
                except ValueError:
                    continue
                for i, log in enumerate(logs):
                    t = log.get("__time__", 0)
                    if not start <= t < end or (topic and log.get("__topic__") != topic) or not match(log):
                        continue
                    matched += 1
                    if histogram_step is not None:
                        b = (t - start) // histogram_step
                        buckets[b] = buckets.get(b, 0) + 1
                        continue
                    key = (t, shard.shard_id, first + k, i)
                    item = ((tuple(-x for x in key) if not reverse else key), matched, log)
                    if len(best) < want:
                        heapq.heappush(best, item)
                    elif want and item[0] > best[0][0]:
                        heapq.heapreplace(best, item)
            seq = result.next_seq
    if histogram_step is not None:
        return buckets, complete
    ordered = sorted(best, key=lambda it: it[0], reverse=True)[offset:offset + line]
    rows = [_stringify(it[2]) for it in ordered]
    keys: dict[str, None] = {}
    for r in rows:
        for k in r:
            keys.setdefault(k, None)
    return QueryResult(rows, list(keys), len(rows), matched, int((time.monotonic() - t0) * 1000)), complete


def _stringify(log: dict[str, Any]) -> dict[str, str]:
    out = {}
    for k, v in log.items():
        out[k] = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
    return out


# ------------------------------------------------------------------ GetHistograms


def histogram_step(start: int, end: int) -> int:
    """Bucket width: the smallest of SLS-like round steps giving at most :data:`MAX_BUCKETS` buckets."""
    span = max(1, end - start)
    for step in _STEPS:
        if span / step <= MAX_BUCKETS:
            return step
    return _STEPS[-1]


async def histograms(hub: Any, project: str, ls: str, start: int, end: int, query: str,
                     topic: str | None) -> tuple[list[dict[str, Any]], str, int]:
    """Counts per time bucket of a search (the SQL part is ignored): (buckets, progress, total)."""
    if end < start:
        raise E.ParameterInvalid(f"from ({start}) must not be after to ({end})")
    search_text, _ = split_query(query)
    node = parse_search(search_text)
    meta, spec = _spec(hub, project, ls)
    step = histogram_step(start, end)
    loop = asyncio.get_running_loop()
    complete = True
    if spec is None:
        buckets, complete = await loop.run_in_executor(hub.executor, scan, hub, meta, node, start, end, topic,
                                                       0, 0, False, step)
    else:
        buckets = await loop.run_in_executor(hub.executor, _leased, hub, project, ls, "histogram", node, spec,
                                             start, end, topic, step)
    progress = "Complete" if complete else "Incomplete"
    out = []
    b = 0
    while start + b * step < end or (b == 0 and start == end):
        lo = start + b * step
        out.append({"from": lo, "to": min(end, lo + step), "count": buckets.get(b, 0), "progress": progress})
        b += 1
        if start == end:
            break
    return out, progress, sum(buckets.values())


async def get_histograms(hub: Any, project: str, ls: str, req: Any) -> web.StreamResponse:
    params = dict(req.params)
    start, end = _int(params, "from"), _int(params, "to")
    out, progress, total = await histograms(hub, project, ls, start, end, params.get("query") or "",
                                            params.get("topic") or None)
    return _json(out, {"x-log-progress": progress, "x-log-count": str(total)})


# ------------------------------------------------------------------ route-table adapters (ctx, req)
# ``ctx.query`` is the hub's QueryService; ``req.args["logstore"]`` the path's logstore (hub/routes.py).


async def _get_logs_v1(ctx: Any, req: Any) -> web.StreamResponse:
    return await get_logs(ctx.query, req.project, req.args["logstore"], req, v2=False)


async def _get_logs_v2(ctx: Any, req: Any) -> web.StreamResponse:
    return await get_logs(ctx.query, req.project, req.args["logstore"], req, v2=True)


async def _get_histograms(ctx: Any, req: Any) -> web.StreamResponse:
    return await get_histograms(ctx.query, req.project, req.args["logstore"], req)


async def _index(ctx: Any, req: Any) -> web.StreamResponse:
    return await index_route(ctx.query, req.project, req.args["logstore"], req)


ROUTE_HANDLERS = {
    "GetLogs": _get_logs_v1,
    "GetLogsV2": _get_logs_v2,
    "GetHistograms": _get_histograms,
    "Index": _index,
}
"""The handlers hub/routes.py points its query entries at."""
