"""``POST /sluice/heartbeats``: the heartbeats of many consumers of one process in one request (sluice's own
consumer; SLS has no such API and answers an error, so the consumer keeps one Heartbeat per consumer there).

Why: a process following 1,000 logstores runs 1,000 consumers; with a Heartbeat each every 3 s that is 333
signed requests a second, most of an idle process's CPU (and the hub's). The consumers of a process beat on
one clock grid (consumer/worker.py), so their beats are sent together: one request, one signature.

Body: ``{"beats": [{"logstore", "group", "consumer", "held": [shard ids], "leave": false}, ...]}``, answered
``{"results": [...]}`` in the same order: each the shards to hold (as Heartbeat answers) or that beat's SLS
error object (``{"errorCode", "errorMessage"}``), so one bad beat never fails the others. Each beat is decided
exactly as a Heartbeat (``groups.py``); ``leave`` is the ``x-sluice-leave`` goodbye of a consumer that released
everything. Bounds (docs/security.md): ``MAX_BEATS_BYTES`` of body (checked before parsing), ``MAX_BEATS``
beats, and per beat the ids are bounded like a Heartbeat body.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from ...wire import errors as E
from ..groups import MAX_HEARTBEAT_BYTES, assignable_shards, check_consumer_name
from .context import ApiContext
from .request import Request, json_response

__all__ = ["MAX_BEATS", "MAX_BEATS_BYTES", "heartbeats"]

MAX_BEATS = 5000
MAX_BEATS_BYTES = 1 << 20
_MAX_HELD = MAX_HEARTBEAT_BYTES // 2  # ids in one beat: what a Heartbeat body of the same bound could list


def _beat(ctx: ApiContext, project: str, item: Any, now: float) -> list[int]:
    if not isinstance(item, dict):
        raise E.ParameterInvalid("each beat must be a JSON object")
    ls, name, held = item.get("logstore"), item.get("group"), item.get("held", [])
    if not isinstance(ls, str) or not isinstance(name, str):
        raise E.ParameterInvalid("a beat needs logstore and group")
    if not isinstance(held, list) or len(held) > _MAX_HELD or \
            not all(isinstance(s, int) and not isinstance(s, bool) for s in held):
        raise E.ParameterInvalid(f"held must be a JSON array of at most {_MAX_HELD} shard ids")
    consumer = check_consumer_name(item.get("consumer") if isinstance(item.get("consumer"), str) else None)
    group, shards, checkpoints = ctx.store.group_snapshot(project, ls, name)
    ids = frozenset(s for s in held if s in shards)  # ids that do not exist are dropped, as Heartbeat does
    coord = ctx.coordinators.of(project, ls, group)
    if not ids and item.get("leave") is True:
        coord.leave(consumer)
        return []
    return coord.heartbeat(consumer, ids, assignable_shards(shards, checkpoints, group.in_order), now)


async def heartbeats(ctx: ApiContext, req: Request) -> web.StreamResponse:
    if len(req.body) > MAX_BEATS_BYTES:
        raise E.PostBodyTooLarge(f"a heartbeats body of {len(req.body)} bytes exceeds {MAX_BEATS_BYTES} bytes")
    try:
        data = json.loads(req.body or b"{}")
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise E.PostBodyInvalid(f"the body is not valid JSON: {type(exc).__name__}") from None
    beats = data.get("beats") if isinstance(data, dict) else None
    if not isinstance(beats, list):
        raise E.ParameterInvalid('the body must be {"beats": [...]}')
    if len(beats) > MAX_BEATS:
        raise E.ParameterInvalid(f"at most {MAX_BEATS} beats per request")
    project, now = req.args["project"], time.monotonic()
    results: list[Any] = []
    for item in beats:
        try:
            results.append(_beat(ctx, project, item, now))
        except E.SLSError as exc:
            results.append(exc.to_json())
    return json_response({"results": results})
