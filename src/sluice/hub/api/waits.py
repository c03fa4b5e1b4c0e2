"""``POST /sluice/wait``: wait on many shards at once (sluice's own consumer; SLS has no such API).

The sessions and their wake-ups are ``hub/waits.py``; this handler parses the body, caps the wait like
PullLogs' long-poll (``x-sluice-wait``, at most ``--max-wait``) and answers ``{"ready": [[logstore, shard], ...]}``.
"""

from __future__ import annotations

from aiohttp import web

from ...wire import errors as E
from ..waits import parse_wait_body
from .context import ApiContext
from .request import Request, json_response

__all__ = ["wait"]


async def wait(ctx: ApiContext, req: Request) -> web.StreamResponse:
    if ctx.waits is None:
        raise E.RouteNotFound("wait sessions are not served by this hub")
    body = parse_wait_body(req.json())
    text = req.headers.get("x-sluice-wait") or "0"
    try:
        seconds = max(0.0, min(float(text), ctx.config.max_wait))
    except ValueError:
        raise E.ParameterInvalid(f"x-sluice-wait {text!r} must be a number of seconds") from None
    if seconds != seconds:  # NaN
        raise E.ParameterInvalid("x-sluice-wait must be a number of seconds")
    ready = await ctx.waits.poll(req.principal.key_id, req.args["project"], body, seconds)
    return json_response({"ready": [[ls, shard] for ls, shard in ready]})
