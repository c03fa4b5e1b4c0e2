"""The data plane: PutLogs (load-balanced, hash-routed) and PullLogs (with sluice's long-poll)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from ...wire import errors as E
from ...wire.compress import choose_encoding, compress, decompress
from ...wire.cursor import encode_cursor
from ...wire.loggroup import parse_group
from ..config import DEFAULT_MAX_PULL_COUNT
from ..query.spl import apply_to_groups as apply_spl
from ..query.spl import compile_spl
from ..store.base import KEY_SPACE, LogstoreMeta, ShardMeta
from .context import ApiContext
from .request import Request, response
from .shards import parse_key, shard_and_cursor

__all__ = ["put_logs", "put_logs_routed", "pull_logs"]


def _pick_shard(ctx: ApiContext, meta: LogstoreMeta, key_text: str | None, routed: bool) -> ShardMeta:
    writable = meta.writable_shards()
    if not writable:
        raise E.LogStoreWithoutShard(f"logstore {meta.name} has no writable shard")
    if routed or key_text:
        key = parse_key(key_text)
        for s in writable:
            if s.begin_key <= key < s.end_key or (s.end_key >= KEY_SPACE - 1 and key >= s.begin_key):
                return s
        raise E.ShardNotExist(f"no writable shard covers hash key {key_text}")
    return writable[next(ctx.rr) % len(writable)]


async def _put(ctx: ApiContext, req: Request, key_text: str | None, routed: bool) -> web.StreamResponse:
    project, ls = req.args["project"], req.args["logstore"]
    meta = ctx.store.get_logstore(project, ls)
    raw_size_text = req.headers.get("x-log-bodyrawsize")
    raw_size = None
    if raw_size_text:
        try:
            raw_size = int(raw_size_text)
        except ValueError:
            raise E.InvalidBodyRawSize(f"x-log-bodyrawsize {raw_size_text!r} is not an integer") from None
    data = decompress(req.body, req.headers.get("x-log-compresstype"), raw_size, limit=ctx.config.max_put_bytes)
    try:
        group = parse_group(data)
    except E.WireError as exc:
        raise E.PostBodyInvalid(f"the body is not a valid LogGroup: {exc}") from None
    nlogs = len(group.Logs)
    if nlogs == 0:
        raise E.PostBodyInvalid("the LogGroup holds no logs")
    if nlogs > ctx.config.max_put_logs:
        raise E.InvalidLogSize(
            f"{nlogs} logs in one request exceed the limit of {ctx.config.max_put_logs}; split the request")
    shard = _pick_shard(ctx, meta, key_text, routed)
    ctype = (req.headers.get("x-log-compresstype") or "").lower()
    # the client's lz4/zstd body is stored as it came (store/segments.py): no compression work on ingest
    await ctx.store.append(shard, data, nlogs, repick=lambda: _pick_shard(ctx, meta, key_text, routed),
                           packed=(ctype, req.body) if ctype in ("lz4", "zstd") else None)
    ctx.metrics.logs_in.labels(project, ls).inc(nlogs)
    ctx.metrics.raw_in.labels(project, ls).inc(len(data))
    return response()


async def put_logs(ctx: ApiContext, req: Request) -> web.StreamResponse:
    """``POST .../shards/lb`` (Python and Java SDKs) or ``POST /logstores/{logstore}`` (Go SDK): any writable
    shard, round robin, unless the ``x-log-hashkey`` header names a key."""
    return await _put(ctx, req, req.headers.get("x-log-hashkey"), routed=False)


async def put_logs_routed(ctx: ApiContext, req: Request) -> web.StreamResponse:
    """``POST .../shards/route?key=<hash>``: the writable shard whose range holds the key."""
    return await _put(ctx, req, req.params.get("key"), routed=True)


def _wait_seconds(ctx: ApiContext, req: Request) -> float:
    text = req.headers.get("x-sluice-wait")
    if not text:
        return 0.0
    try:
        return max(0.0, min(float(text), ctx.config.max_wait))
    except ValueError:
        raise E.ParameterInvalid(f"x-sluice-wait {text!r} must be a number of seconds") from None


def _read_and_encode(ctx: ApiContext, shard: ShardMeta, seq: int, count: int, end: int | None,
                     encoding: str, spl: Any = None, spl_raw: list[int] | None = None) -> tuple[bytes, int, int, int]:
    """Runs on a reader thread: fetch the stored (already framed) groups, compress once. With an SPL
    program, the groups are filtered/rewritten first; the cursor still moves over the raw groups. An lz4
    answer without SPL comes from the store as one lz4 block made of the stored records (no compression)."""
    result = ctx.store.read(shard, seq, count, ctx.config.max_pull_bytes, end,
                            encoding="lz4" if encoding == "lz4" and spl is None else "")
    if not result.count:
        return b"", 0, 0, max(seq, min(result.next_seq, shard.end_seq))
    if result.encoding:  # already lz4 (store/_lz4stitch.c)
        return result.body, result.raw_size, result.count, result.next_seq
    if spl is not None and spl_raw is not None:
        spl_raw[:] = [result.count, len(result.body)]
        body, groups = apply_spl(spl, result.body)
        return (compress(body, encoding) if body else b""), len(body), groups, result.next_seq
    return compress(result.body, encoding), len(result.body), result.count, result.next_seq


async def pull_logs(ctx: ApiContext, req: Request) -> web.StreamResponse:
    """``GET .../shards/{shard}?type=log`` (Python, Java) or ``type=logs`` (Go): LogGroups from a cursor."""
    if req.params.get("processor"):  # a named consume processor lives in SLS; never answer unfiltered
        raise E.ParameterInvalid("invalid query: consume processors are not supported by this hub; pass query=")
    spl = compile_spl(req.params["query"]) if req.params.get("query", "").strip() else None  # 400 if invalid
    shard, seq = shard_and_cursor(ctx, req, req.params.get("cursor"))
    count = req.int_param("count", DEFAULT_MAX_PULL_COUNT)
    if count < 0:
        raise E.ParameterInvalid(f"count must be between 0 and {DEFAULT_MAX_PULL_COUNT}, got {count}")
    count = min(count, DEFAULT_MAX_PULL_COUNT)
    end = None
    if req.params.get("end_cursor"):
        _, end = shard_and_cursor(ctx, req, req.params["end_cursor"], "end_cursor")
    encoding = choose_encoding(req.headers.get("Accept-Encoding"))
    wait = _wait_seconds(ctx, req)
    if wait > 0 and count > 0 and max(seq, shard.begin_seq) >= shard.end_seq and (end is None or end > seq):
        await ctx.polls.wait(shard, seq, wait)
    spl_raw = [0, 0]
    body, raw_size, groups, nxt = await asyncio.get_running_loop().run_in_executor(
        ctx.executor, _read_and_encode, ctx, shard, seq, count, end, encoding, spl, spl_raw)
    headers = {
        "x-log-cursor": encode_cursor(nxt),
        "x-log-count": str(groups),
        "x-log-bodyrawsize": str(raw_size),
    }
    if spl is not None:  # what the pull read before the SPL filtered it (the SDK reads both)
        headers["x-log-rawdatacount"], headers["x-log-rawdatasize"] = str(spl_raw[0]), str(spl_raw[1])
    if encoding and raw_size:
        headers["x-log-compresstype"] = encoding
    return response(body=body, content_type="application/x-protobuf", headers=headers)
