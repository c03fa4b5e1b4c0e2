"""Shard APIs: ListShards, SplitShard, MergeShard, DeleteShard, GetCursor, GetCursorTime."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from ...wire import errors as E
from ...wire.cursor import decode_cursor, encode_cursor
from ..store.base import KEY_SPACE, ShardMeta
from .context import ApiContext
from .request import Request, json_response, response

__all__ = ["list_shards", "split_shard", "merge_shard", "delete_shard", "get_cursor", "get_cursor_time",
           "parse_key", "shard_and_cursor"]


def parse_key(value: str | None) -> int:
    """A hash key as SLS writes it: up to 32 hex digits (128 bits)."""
    if not value:
        raise E.ParameterInvalid("a hash key is required (32 hex digits)")
    try:
        key = int(value.strip(), 16)
    except ValueError:
        raise E.ParameterInvalid(f"hash key {value!r} is not hexadecimal") from None
    if len(value.strip()) > 32 or key >= KEY_SPACE:
        raise E.ParameterInvalid(f"hash key {value!r} is longer than 128 bits")
    return key


def shard_and_cursor(ctx: ApiContext, req: Request, cursor_text: str | None,
                     name: str = "cursor") -> tuple[ShardMeta, int]:
    shard = ctx.store.get_shard(req.args["project"], req.args["logstore"], req.args["shard"])
    if not cursor_text:
        raise E.InvalidCursor(f"parameter {name} is required")
    seq = decode_cursor(cursor_text)
    if seq > shard.end_seq:
        raise E.InvalidCursor(f"{name} {cursor_text} is beyond the end of shard {shard.shard_id}")
    return shard, seq


async def list_shards(ctx: ApiContext, req: Request) -> web.StreamResponse:
    return json_response([s.to_json() for s in ctx.store.shards_of(req.args["project"], req.args["logstore"])])


async def split_shard(ctx: ApiContext, req: Request) -> web.StreamResponse:
    key = parse_key(req.params.get("key"))
    shards = await ctx.store.split_shard(req.args["project"], req.args["logstore"], req.args["shard"], key)
    return json_response([s.to_json() for s in shards])


async def merge_shard(ctx: ApiContext, req: Request) -> web.StreamResponse:
    shards = await ctx.store.merge_shard(req.args["project"], req.args["logstore"], req.args["shard"])
    return json_response([s.to_json() for s in shards])


async def delete_shard(ctx: ApiContext, req: Request) -> web.StreamResponse:
    await ctx.store.delete_shard(req.args["project"], req.args["logstore"], req.args["shard"])
    return response()


async def get_cursor(ctx: ApiContext, req: Request) -> web.StreamResponse:
    shard = ctx.store.get_shard(req.args["project"], req.args["logstore"], req.args["shard"])
    where = (req.params.get("from") or "").strip()
    if where == "begin":
        seq = shard.begin_seq
    elif where == "end":
        seq = shard.end_seq
    else:
        try:
            t = float(where)
        except ValueError:
            raise E.ParameterInvalid(f"Parameter From is not valid: {where!r} (use begin, end or unix seconds)") \
                from None
        if t != t or t < 0:
            raise E.ParameterInvalid(f"Parameter From is not valid: {where!r}")
        if t * 1000 > shard.last_write_ms:
            seq = shard.end_seq
        else:
            seq = await asyncio.get_running_loop().run_in_executor(
                ctx.executor, ctx.store.seq_at_time, shard, int(t * 1000))
    return json_response({"cursor": encode_cursor(seq)})


async def get_cursor_time(ctx: ApiContext, req: Request) -> web.StreamResponse:
    shard, seq = shard_and_cursor(ctx, req, req.params.get("cursor"))
    if seq < shard.begin_seq:
        raise E.InvalidCursor(f"cursor {req.params.get('cursor')} points before the oldest kept data")
    if seq == shard.end_seq:
        ms = shard.last_write_ms or int(time.time() * 1000)
    else:
        found = await asyncio.get_running_loop().run_in_executor(ctx.executor, ctx.store.recv_time_ms, shard, seq)
        ms = found if found is not None else int(time.time() * 1000)
    return json_response({"cursor_time": ms // 1000})
