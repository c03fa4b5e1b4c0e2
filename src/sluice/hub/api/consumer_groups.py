"""Consumer-group APIs: List/Create/Update/DeleteConsumerGroup, Heartbeat, UpdateCheckPoint, GetCheckPoint.

Which shards a group may hand out, and who may commit, is decided in ``hub/groups.py``; these handlers only
parse, look up a consistent snapshot in the store, and ask.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web

from ...wire import errors as E
from ...wire.cursor import decode_cursor
from ..groups import assignable_shards, check_consumer_name, parse_heartbeat
from .context import ApiContext
from .request import GROUP_NAME, Request, as_bool, as_int, check_name, json_response, response

__all__ = ["list_groups", "create_group", "update_group", "delete_group", "heartbeat", "update_checkpoint",
           "get_checkpoints"]

log = logging.getLogger("sluice.hub")


def _timeout(value: Any) -> int:
    timeout = as_int(value, "timeout")
    if not 1 <= timeout <= 86400:
        raise E.ParameterInvalid(f"timeout must be between 1 and 86400 seconds, got {timeout}")
    return timeout


def _object(req: Request) -> dict[str, Any]:
    data = req.json()
    if not isinstance(data, dict):
        raise E.ParameterInvalid("the consumer group body must be a JSON object")
    return data


async def list_groups(ctx: ApiContext, req: Request) -> web.StreamResponse:
    groups = ctx.store.groups_of(req.args["project"], req.args["logstore"])
    return json_response([{"name": g.name, "timeout": g.timeout, "order": g.in_order} for g in groups])


async def create_group(ctx: ApiContext, req: Request) -> web.StreamResponse:
    project, ls = req.args["project"], req.args["logstore"]
    ctx.store.get_logstore(project, ls)
    data = _object(req)
    name = data.get("consumerGroup")
    if not check_name(GROUP_NAME, name):
        raise E.ParameterInvalid(f"consumer group name {name!r} is invalid: 2-128 of [A-Za-z0-9_-]")
    timeout = _timeout(data.get("timeout"))
    order = as_bool(data.get("order", False), "order")
    await ctx.store.create_group(project, ls, name, timeout, order)
    return response()


async def update_group(ctx: ApiContext, req: Request) -> web.StreamResponse:
    data = _object(req)
    timeout = _timeout(data["timeout"]) if "timeout" in data else None
    order = as_bool(data["order"], "order") if "order" in data else None
    await ctx.store.update_group(req.args["project"], req.args["logstore"], req.args["group"], timeout, order)
    return response()


async def delete_group(ctx: ApiContext, req: Request) -> web.StreamResponse:
    project, ls, name = req.args["project"], req.args["logstore"], req.args["group"]
    await ctx.store.delete_group(project, ls, name)
    ctx.coordinators.forget(project, ls, name)
    return response()


async def heartbeat(ctx: ApiContext, req: Request) -> web.StreamResponse:
    project, ls, name = req.args["project"], req.args["logstore"], req.args["group"]
    group, shards, checkpoints = ctx.store.group_snapshot(project, ls, name)
    consumer = check_consumer_name(req.params.get("consumer"))
    held = parse_heartbeat(req.body, shards)  # bounded, and only shards that exist (groups.py)
    assignable = assignable_shards(shards, checkpoints, group.in_order)
    coord = ctx.coordinators.of(project, ls, group)
    if not held and req.headers.get("x-sluice-leave"):
        # sluice's consumer says goodbye after releasing everything (SLS has no such call): its shards
        # move to the others at their next heartbeat instead of after the group timeout.
        coord.leave(consumer)
        return json_response([])
    return json_response(coord.heartbeat(consumer, held, assignable, time.monotonic()))


async def update_checkpoint(ctx: ApiContext, req: Request) -> web.StreamResponse:
    project, ls, name = req.args["project"], req.args["logstore"], req.args["group"]
    group, shards, checkpoints = ctx.store.group_snapshot(project, ls, name)
    data = req.json()
    if not isinstance(data, dict):
        raise E.ParameterInvalid("the checkpoint body must be a JSON object")
    shard_id = as_int(data.get("shard"), "shard")
    shard = shards.get(shard_id)
    if shard is None:
        raise E.ShardNotExist(f"shard {shard_id} does not exist", http_status=404)
    cursor = data.get("checkpoint")
    if not isinstance(cursor, str):
        raise E.InvalidShardCheckPoint("checkpoint must be a cursor string")
    try:
        seq = decode_cursor(cursor)
    except E.InvalidCursor:
        raise E.InvalidShardCheckPoint(f"checkpoint {cursor!r} is not a valid cursor") from None
    if seq > shard.end_seq:
        raise E.InvalidShardCheckPoint(f"checkpoint {cursor!r} is beyond the end of shard {shard_id}")
    consumer = req.params.get("consumer", "")
    force = req.params.get("forceSuccess", "false").lower() == "true"
    coord = ctx.coordinators.of(project, ls, group)
    owner = coord.check_commit(consumer, shard_id, force, time.monotonic())  # the hub's grant decides (groups.py)
    previous = checkpoints.get(shard_id)
    if not owner and previous is not None and seq < previous.seq:
        # A forced commit from a consumer that no longer holds the shard (a late flush after failover)
        # must not rewind the new owner's progress. Accepted and ignored, as a stale write.
        log.info("ignored stale checkpoint %s < %s from %r on %s/%s/%s shard %d", seq, previous.seq,
                 consumer, project, ls, name, shard_id)
        return response()
    await ctx.store.save_checkpoint(project, ls, name, shard_id, cursor.strip(), seq, consumer)
    return response()


async def get_checkpoints(ctx: ApiContext, req: Request) -> web.StreamResponse:
    group, shards, checkpoints = ctx.store.group_snapshot(req.args["project"], req.args["logstore"],
                                                          req.args["group"])
    # a shard held but not yet checkpointed reports its holder (sluice status shows who has it), #20
    coord, now = ctx.coordinators.of(req.args["project"], req.args["logstore"], group), time.monotonic()
    shard_ids = sorted(shards)
    if req.params.get("shard") not in (None, "", "-1"):
        sid = req.int_param("shard")
        shard_ids = [sid] if sid in shards else []
    out = []
    for sid in shard_ids:
        cp = checkpoints.get(sid)
        out.append({"shard": sid, "checkpoint": cp.cursor if cp else "",
                    "updateTime": cp.update_time_us if cp else 0,
                    "consumer": cp.consumer if cp else (coord.owner_of(sid, now) or "")})
    return json_response(out)
