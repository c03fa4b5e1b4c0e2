"""``sluice admin checkpoint``: show a consumer group's checkpoints, and reset them to begin, end or a time,
per logstore or per shard, to replay (or skip) logs on purpose. Hub or SLS: only SLS API calls, through
the client layer.

A reset must win over what the group stored before: a hub ignores a forced checkpoint that would rewind
a shard (a stale consumer's late flush must not undo its successor's progress), and SLS keeps no history
either way. So a reset deletes the group and creates it again with the same timeout and order, then writes
every shard's checkpoint: the new position where asked, the old one elsewhere.

Consumers still running would write their own positions over the reset, so the command refuses while the
group looks alive: a checkpoint written within the last ``--alive-within`` seconds (default: three group
timeouts, at least 10 s), or, on a hub, a shard held without a checkpoint yet. A consumer that has been idle
longer than that is not seen: stop the job first. ``--force`` skips the check; ``--dry-run`` only prints
what would change.

A monitor job (``sluice run``) keeps its windows in a state logstore of its own; a rewound monitor does
not count again what it already counted. ``--monitor-state`` also deletes that logstore
(``sluice-monitor-<group>``, or the name given), so the restarted job evaluates the replayed logs afresh
and raises the same alerts, with the same ids, as the live run did.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import click

from .client import AsyncClient
from .consumer.config import parse_start
from .wire.errors import ConsumerGroupNotExist, LogStoreNotExist, SluiceError

__all__ = ["checkpoint", "CheckpointRow", "plan_reset", "apply_reset", "show"]


@dataclass
class CheckpointRow:
    logstore: str
    shard: int
    status: str
    checkpoint: str
    checkpoint_time: int | None
    consumer: str
    updated_ago: float | None
    new: str | None = None  # the reset's target cursor (None: unchanged)
    new_time: int | None = None


async def _logstores(client: AsyncClient, project: str, group: str, logstores: tuple[str, ...]) -> list[str]:
    if logstores:
        return list(logstores)
    out = []
    for ls in await client.list_logstores(project):
        if ls.startswith("sluice-monitor-"):  # a monitor job's own state (see --monitor-state)
            continue
        if any(g.get("name") == group for g in await client.list_consumer_groups(project, ls)):
            out.append(ls)
    if not out:
        raise click.ClickException(f"no logstore of {project} has a consumer group {group!r}")
    return out


async def show(client: AsyncClient, project: str, group: str, logstores: tuple[str, ...] = (),
               shards: tuple[int, ...] = ()) -> list[CheckpointRow]:
    rows = []
    now = time.time()
    for ls in await _logstores(client, project, group, logstores):
        try:
            cps = {int(e["shard"]): e for e in await client.get_checkpoints(project, ls, group)}
        except ConsumerGroupNotExist:
            raise click.ClickException(f"{project}/{ls} has no consumer group {group!r}") from None
        for s in await client.list_shards(project, ls):
            sid = int(s["shardID"])
            if shards and sid not in shards:
                continue
            e = cps.get(sid, {})
            cursor = str(e.get("checkpoint") or "")
            cp_time = await client.get_cursor_time(project, ls, sid, cursor) if cursor else None
            updated = int(e.get("updateTime") or 0)
            rows.append(CheckpointRow(ls, sid, str(s.get("status", "")), cursor, cp_time, str(e.get("consumer", "")),
                                      (now - updated / 1e6) if updated else None))
    return rows


async def plan_reset(client: AsyncClient, project: str, group: str, to: str, logstores: tuple[str, ...] = (),
                     shards: tuple[int, ...] = ()) -> list[CheckpointRow]:
    """The group's checkpoints with ``new`` set where the reset moves them (to ``begin``, ``end`` or a time)."""
    where = parse_start(to)
    rows = await show(client, project, group, logstores, ())
    for r in rows:
        if shards and r.shard not in shards:
            continue
        r.new = await client.get_cursor(project, r.logstore, r.shard, where)
        r.new_time = await client.get_cursor_time(project, r.logstore, r.shard, r.new)
    return rows


def alive(rows: list[CheckpointRow], within: float) -> list[str]:
    """Why the group looks alive: recent checkpoint writes, or (hub) shards held without a checkpoint."""
    why = []
    for r in rows:
        if r.updated_ago is not None and r.updated_ago < within and r.consumer:
            why.append(f"{r.logstore} shard {r.shard}: checkpoint written by {r.consumer} {r.updated_ago:.0f}s ago")
        elif not r.checkpoint and r.consumer:
            why.append(f"{r.logstore} shard {r.shard}: held by {r.consumer}")
    return why


async def apply_reset(client: AsyncClient, project: str, group: str, rows: list[CheckpointRow]) -> None:
    for ls in dict.fromkeys(r.logstore for r in rows):
        mine = [r for r in rows if r.logstore == ls]
        if not any(r.new is not None for r in mine):
            continue
        info = next((g for g in await client.list_consumer_groups(project, ls) if g.get("name") == group), {})
        timeout, order = int(info.get("timeout", 60)), bool(info.get("order", False))
        await client.delete_consumer_group(project, ls, group)
        await client.create_consumer_group(project, ls, group, timeout, order)
        for r in mine:
            value = r.new if r.new is not None else r.checkpoint
            if value:
                await client.update_checkpoint(project, ls, group, r.shard, value, consumer="", force=True)


def _fmt_time(t: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) if t else "-"


def _echo_rows(rows: list[CheckpointRow], as_json: bool, reset: bool) -> None:
    if as_json:
        click.echo(json.dumps([asdict(r) for r in rows], indent=2))
        return
    for r in rows:
        line = (f"{r.logstore} shard {r.shard} ({r.status}): {r.checkpoint or '(none)'} "
                f"[{_fmt_time(r.checkpoint_time)} UTC] by {r.consumer or '-'}")
        if reset:
            line += (f" -> {r.new} [{_fmt_time(r.new_time)} UTC]" if r.new is not None else " (unchanged)")
        click.echo(line)


def _client_options(f):  # type: ignore[no-untyped-def]
    f = click.option("--access-key-secret", envvar=["SLS_AK_KEY", "ALIBABA_CLOUD_ACCESS_KEY_SECRET"], default="",
                     help="Or SLS_AK_KEY / ALIBABA_CLOUD_ACCESS_KEY_SECRET.")(f)
    f = click.option("--access-key-id", envvar=["SLS_AK_ID", "ALIBABA_CLOUD_ACCESS_KEY_ID"], default="",
                     help="Or SLS_AK_ID / ALIBABA_CLOUD_ACCESS_KEY_ID.")(f)
    f = click.option("--endpoint", required=True, envvar="SLUICE_ENDPOINT", help="Hub or SLS endpoint.")(f)
    return f


def _run(endpoint: str, key_id: str, secret: str, work: Any) -> Any:
    async def main() -> Any:
        token = os.environ.get("SLS_SECURITY_TOKEN") or os.environ.get("ALIBABA_CLOUD_SECURITY_TOKEN") or None
        async with AsyncClient(endpoint, key_id, secret, security_token=token) as client:
            return await work(client)
    try:
        return asyncio.run(main())
    except SluiceError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def checkpoint() -> None:
    """Show or reset a consumer group's checkpoints (replay from begin, a time, or skip to the end)."""


@checkpoint.command("show")
@_client_options
@click.argument("project")
@click.argument("group")
@click.option("--logstore", "logstores", multiple=True, help="Default: every logstore that has the group.")
@click.option("--shard", "shards", multiple=True, type=int, help="Only these shards (repeatable).")
@click.option("--json", "as_json", is_flag=True)
def checkpoint_show(endpoint: str, access_key_id: str, access_key_secret: str, project: str, group: str,
                    logstores: tuple[str, ...], shards: tuple[int, ...], as_json: bool) -> None:
    """The group's checkpoint per shard, with the receive time of the log group it points at."""
    rows = _run(endpoint, access_key_id, access_key_secret,
                lambda c: show(c, project, group, logstores, shards))
    _echo_rows(rows, as_json, reset=False)


@checkpoint.command("reset")
@_client_options
@click.argument("project")
@click.argument("group")
@click.option("--to", "to", required=True, help="begin | end | unix seconds | '2024-05-01 10:00:00' (UTC).")
@click.option("--logstore", "logstores", multiple=True,
              help="Default: every logstore that has the group (but a monitor's sluice-monitor-* state).")
@click.option("--shard", "shards", multiple=True, type=int, help="Only these shards (repeatable).")
@click.option("--dry-run", is_flag=True, help="Print what would change; change nothing.")
@click.option("--force", is_flag=True, help="Reset even though consumers of the group look alive.")
@click.option("--alive-within", type=float, default=None,
              help="Seconds: a checkpoint written this recently means a live consumer "
                   "(default: 3 group timeouts, at least 10).")
@click.option("--monitor-state", "monitor_state", is_flag=False, flag_value="", default=None,
              help="A monitor job's group: also delete its state logstore (default name sluice-monitor-GROUP), "
                   "so the replay is evaluated afresh.")
@click.option("--json", "as_json", is_flag=True)
def checkpoint_reset(endpoint: str, access_key_id: str, access_key_secret: str, project: str, group: str, to: str,
                     logstores: tuple[str, ...], shards: tuple[int, ...], dry_run: bool, force: bool,
                     alive_within: float | None, monitor_state: str | None, as_json: bool) -> None:
    """Move the group's checkpoints to TO; refuses while consumers of the group are alive unless --force."""
    async def work(c: AsyncClient) -> tuple[list[CheckpointRow], list[str]]:
        rows = await plan_reset(c, project, group, to, logstores, shards)
        within = alive_within
        if within is None:
            timeouts = [int(g.get("timeout", 60)) for ls in dict.fromkeys(r.logstore for r in rows)
                        for g in await c.list_consumer_groups(project, ls) if g.get("name") == group]
            within = max([10.0] + [3.0 * t for t in timeouts])
        why = alive(rows, within)
        if not dry_run and (force or not why):
            await apply_reset(c, project, group, rows)
            if state is not None:
                try:
                    await c.delete_logstore(project, state)
                    click.echo(f"deleted the monitor state logstore {project}/{state}", err=True)
                except LogStoreNotExist:
                    pass
        return rows, why

    state = None
    if monitor_state is not None:
        from .pipelines.monitor.state import default_state_logstore
        state = monitor_state or default_state_logstore(group)

    rows, why = _run(endpoint, access_key_id, access_key_secret, work)
    _echo_rows(rows, as_json, reset=True)
    if dry_run:
        click.echo("dry run: nothing changed" + (f" (the group looks alive: {'; '.join(why)})" if why else ""),
                   err=True)
        return
    if why and not force:
        raise click.ClickException("consumers of the group look alive; stop them first (or --force): "
                                   + "; ".join(why))
    changed = sum(1 for r in rows if r.new is not None)
    click.echo(f"reset {changed} checkpoint(s) of group {group} in {project}", err=True)
