"""Dispatch: route log groups (or single logs) to other logstores, first matching route wins.

Group-level routes (topic, source, tags) decide on the group's header alone and forward its received
bytes untouched: no log is parsed, nothing is re-encoded. A route on log fields switches the rest of the
route list to per-log evaluation for that group; the logs are then regrouped per target (keeping the
group's topic, source and tags). A batch is checkpointed only after every target acknowledged every group
of it (at-least-once: a failed write retries the whole batch, so a target may see a group twice, never
zero times).
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any

from ..client import AsyncClient
from ..consumer import Processor, ShardContext
from ..wire.batch import Batch, LazyLogGroup
from ..wire.loggroup import LogGroup
from ..wire.pack import Buffer
from .clients import ClientPool
from .config import Dispatch, Match, Source, Target

__all__ = ["Router", "DispatchProcessor", "TargetKey"]

log = logging.getLogger("sluice.pipelines.dispatch")


@dataclass(frozen=True)
class TargetKey:
    endpoint: str
    access_key_id: str
    access_key_secret: str
    project: str
    logstore: str
    ca_bundle: str | None = None
    tls_verify: bool = True
    security_token: str | None = None  # the source's, when the target writes with the source's keys
    credentials_file: str | None = None  # likewise (keys that rotate: pipelines/clients.py)

    def __str__(self) -> str:
        return f"{self.endpoint}/{self.project}/{self.logstore}"


def resolve_target(target: Target, source: Source) -> TargetKey:
    same_endpoint = target.endpoint in (None, source.endpoint)
    ca_bundle = target.ca_bundle if target.ca_bundle is not None else source.ca_bundle if same_endpoint else None
    tls_verify = target.tls_verify if target.tls_verify is not None else source.tls_verify if same_endpoint else True
    return TargetKey(target.endpoint or source.endpoint,
                     target.access_key_id if target.access_key_id is not None else source.access_key_id,
                     target.access_key_secret if target.access_key_secret is not None else source.access_key_secret,
                     target.project or source.project, target.logstore, ca_bundle, tls_verify,
                     source.security_token if target.access_key_id is None and same_endpoint else None,
                     target.credentials_file or (source.credentials_file if target.access_key_id is None
                                                 and same_endpoint else None))


class _CompiledMatch:
    def __init__(self, m: Match) -> None:
        self.topic = m.topic
        self.source = m.source
        self.tags = {k: re.compile(v) for k, v in m.tags.items()}
        self.fields = {k: re.compile(v) for k, v in m.field.items()}

    def group_matches(self, g: LazyLogGroup) -> bool:
        if self.topic is not None and g.Topic != self.topic:
            return False
        if self.source is not None and g.Source != self.source:
            return False
        if self.tags:
            tags = g.tags
            return all(k in tags and p.search(tags[k]) for k, p in self.tags.items())
        return True

    def log_matches(self, fields: dict[str, str]) -> bool:
        return all(k in fields and p.search(fields[k]) for k, p in self.fields.items())


class Router:
    """Pure routing decisions for one source."""

    def __init__(self, spec: Dispatch, source: Source) -> None:
        self.routes = [(_CompiledMatch(r.match), resolve_target(r.to, source)) for r in spec.routes]
        self.default = None if spec.default == "drop" else resolve_target(spec.default, source)  # type: ignore[arg-type]

    def route(self, group: LazyLogGroup) -> dict[TargetKey, list[Buffer]]:
        """Serialized LogGroups to write, per target, for one received group."""
        for i, (match, target) in enumerate(self.routes):
            if match.fields:
                return self._route_logs(group, i)
            if match.group_matches(group):
                return {target: [group.payload]}
        return {self.default: [group.payload]} if self.default else {}

    def _route_logs(self, group: LazyLogGroup, first: int) -> dict[TargetKey, list[Buffer]]:
        candidates = [(m, t) for m, t in self.routes[first:] if m.group_matches(group)]
        if not candidates:
            return {self.default: [group.payload]} if self.default else {}
        per_target: dict[TargetKey, Any] = {}
        for entry in group.Logs:
            fields = {c.Key: c.Value for c in entry.Contents}
            target = next((t for m, t in candidates if m.log_matches(fields)), self.default)
            if target is None:
                continue
            out = per_target.get(target)
            if out is None:
                out = per_target[target] = LogGroup()
                out.Topic, out.Source = group.Topic, group.Source
                for tag in group.LogTags:
                    t = out.LogTags.add()
                    t.Key, t.Value = tag.Key, tag.Value
            out.Logs.append(entry)
        if len(per_target) == 1 and next(iter(per_target.values())).Logs and \
                len(next(iter(per_target.values())).Logs) == len(group.Logs):
            return {next(iter(per_target)): [group.payload]}  # all logs went one way: forward as is
        return {t: [g.SerializeToString()] for t, g in per_target.items()}


class DispatchProcessor(Processor):
    """Routes each batch, writes every target, then checkpoints."""

    def __init__(self, router: Router, clients: ClientPool, counters: dict[str, int]) -> None:
        self.router = router
        self.clients = clients
        self.counters = counters

    async def process(self, batch: Batch, ctx: ShardContext) -> str | None:
        plan: dict[TargetKey, list[Buffer]] = {}
        for group in batch:
            for target, groups in self.router.route(group).items():
                plan.setdefault(target, []).extend(groups)
        await asyncio.gather(*(self._write(t, gs) for t, gs in plan.items()))
        self.counters["groups_in"] = self.counters.get("groups_in", 0) + batch.count
        self.counters["bytes_in"] = self.counters.get("bytes_in", 0) + len(batch.raw)
        ctx.checkpoint()
        return None

    async def _write(self, target: TargetKey, groups: list[Buffer]) -> None:
        client: AsyncClient = self.clients.get(target.endpoint, target.access_key_id, target.access_key_secret,
                                               target.security_token, ca_bundle=target.ca_bundle,
                                               tls_verify=target.tls_verify, credentials_file=target.credentials_file)
        # in order, per target; consecutive groups with the same header share a request (wire/pack.py)
        await client.put_log_groups(target.project, target.logstore, groups)
        self.counters["groups_out"] = self.counters.get("groups_out", 0) + len(groups)
