"""Logstore APIs: ListLogstore, CreateLogstore, GetLogstore, UpdateLogstore, DeleteLogstore."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ...wire import errors as E
from .context import ApiContext
from .request import LOGSTORE_NAME, MAX_PAGE, Request, as_int, check_name, json_response, response

__all__ = ["list_logstores", "create_logstore", "get_logstore", "update_logstore", "delete_logstore"]

_NOT_CONFIG = ("logstoreName", "ttl", "shardCount")


def _body(req: Request) -> tuple[dict[str, Any], int]:
    data = req.json()
    if not isinstance(data, dict):
        raise E.LogStoreInfoInvalid("the logstore body must be a JSON object")
    ttl = as_int(data.get("ttl", 30), "ttl", E.LogStoreInfoInvalid)
    if not 1 <= ttl <= 3650:
        raise E.LogStoreInfoInvalid(f"ttl must be between 1 and 3650 days, got {ttl}")
    return data, ttl


async def list_logstores(ctx: ApiContext, req: Request) -> web.StreamResponse:
    offset, size = max(0, req.int_param("offset", 0)), req.int_param("size", 100)
    size = MAX_PAGE if size < 0 or size > MAX_PAGE else size  # bounded work per request; clients page on
    pattern = req.params.get("logstoreName") or ""
    names = [n for n in ctx.store.logstore_names(req.args["project"]) if pattern in n]
    page = names[offset: offset + size]
    return json_response({"count": len(page), "total": len(names), "logstores": page})


async def create_logstore(ctx: ApiContext, req: Request) -> web.StreamResponse:
    data, ttl = _body(req)
    name = data.get("logstoreName")
    if not check_name(LOGSTORE_NAME, name):
        raise E.LogStoreInfoInvalid(f"logstore name {name!r} is invalid: 3-63 lowercase letters, digits, '_' or '-'")
    shards = as_int(data.get("shardCount", 2), "shardCount", E.LogStoreInfoInvalid)
    if not 1 <= shards <= 256:
        raise E.LogStoreInfoInvalid(f"shardCount must be between 1 and 256, got {shards}")
    config = {k: v for k, v in data.items() if k not in _NOT_CONFIG}
    await ctx.store.create_logstore(req.args["project"], name, ttl, shards, config)
    return response()


async def get_logstore(ctx: ApiContext, req: Request) -> web.StreamResponse:
    return json_response(ctx.store.get_logstore(req.args["project"], req.args["logstore"]).to_json())


async def update_logstore(ctx: ApiContext, req: Request) -> web.StreamResponse:
    project, name = req.args["project"], req.args["logstore"]
    data, ttl = _body(req)
    meta = ctx.store.get_logstore(project, name)
    if "shardCount" in data and as_int(data["shardCount"], "shardCount") != len(meta.writable_shards()):
        raise E.ParameterInvalid("shardCount cannot be changed by UpdateLogStore; split or merge shards")
    config = dict(meta.config)
    config.update({k: v for k, v in data.items() if k not in _NOT_CONFIG})
    await ctx.store.update_logstore(project, name, ttl, config)
    return response()


async def delete_logstore(ctx: ApiContext, req: Request) -> web.StreamResponse:
    project, name = req.args["project"], req.args["logstore"]
    await ctx.store.delete_logstore(project, name)
    ctx.coordinators.forget(project, name)
    return response()
