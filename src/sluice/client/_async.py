"""``AsyncClient``: the SLS API client everything in sluice uses, against the hub and Alibaba Cloud alike.

One implementation, async; ``Client`` (``_sync.py``) is a thin blocking facade over it.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Iterable, Mapping, Sequence

from ..wire.compress import compress, decompress
from ..wire.errors import SLSError, WireError, for_code
from ..wire.batch import Batch, LazyLogGroup
from ..wire.loggroup import LogGroup, split_groups
from ..wire.pack import pack_groups
from ._transport import Credentials, RetryPolicy, Transport

__all__ = ["AsyncClient", "ClientConfig", "PullResult"]

_MAX_PULL_RAW = 256 << 20
LIST_PAGE_SIZE = 500  # SLS's largest page for ListProject and ListLogStores
# Bodies above this decompress on a thread (lz4/zstd release the GIL) so the loop serves other shards
# meanwhile. Below it, inline: a hub's 4 MB pull takes ~0.6 ms with lz4, less than the thread hand-off costs
# in CPU (the submit, two wake-ups and the GIL: ~3% of a dispatcher's CPU at a 1 MB threshold).
_THREAD_DECOMPRESS_BYTES = 16 << 20


@dataclass
class PullResult:
    """One PullLogs answer: the decompressed LogGroupList bytes, how many groups, and the next cursor."""

    project: str
    logstore: str
    shard: int
    cursor: str
    next_cursor: str
    count: int
    raw: bytes
    raw_size: int
    # with an SPL query: what the server read before filtering (x-log-rawdatacount / -rawdatasize), -1 when
    # the answer did not say (a server that did not evaluate the query says nothing)
    raw_count_before_query: int = -1
    raw_size_before_query: int = -1

    def batch(self, endpoint: str = "") -> Batch:
        """The answer as a lazy ``Batch`` (groups split without parsing, logs parsed only when asked)."""
        return Batch(project=self.project, logstore=self.logstore, shard=self.shard, cursor=self.cursor,
                     next_cursor=self.next_cursor, count=self.count, raw=self.raw, endpoint=endpoint)

    def group_bytes(self) -> list[memoryview]:
        """Each LogGroup's serialized bytes, without parsing the logs."""
        return list(split_groups(self.raw))

    def log_groups(self) -> list[LazyLogGroup]:
        return self.batch().LogGroups

    def logs(self) -> list[dict[str, Any]]:
        """Every log as a flat dict: its fields plus __time__, __topic__, __source__ and __tag__:<key>."""
        return self.batch().logs()


def build_log_group(logs: Iterable[Mapping[str, Any]], *, topic: str = "", source: str = "",
                    tags: Mapping[str, str] | None = None, now: float | None = None) -> bytes:
    """Serialize logs (dicts; ``__time__`` optional, defaults to now) into one LogGroup."""
    g = LogGroup()
    g.Topic = topic
    g.Source = source
    t_default = int(time.time() if now is None else now)
    for item in logs:
        lg = g.Logs.add()
        lg.Time = int(item.get("__time__", t_default))
        for k, v in item.items():
            if k == "__time__":
                continue
            c = lg.Contents.add()
            c.Key = str(k)
            c.Value = v if isinstance(v, str) else json.dumps(v) if isinstance(v, (dict, list)) else str(v)
    for k, v in (tags or {}).items():
        t = g.LogTags.add()
        t.Key, t.Value = k, v
    return g.SerializeToString()


@dataclass(frozen=True)
class ClientConfig:
    """Everything that makes one client differ from another, with the client's defaults (the one place they
    are written: ``AsyncClient``'s keyword defaults are these). Frozen and hashable, so a pool of clients
    (pipelines/clients.py) keys on the whole config: two targets that differ only in their security token
    or TLS settings get two clients.

    ``credentials_provider``: for keys that rotate (STS, RAM roles), a callable returning
    ``(access_key_id, access_key_secret, security_token)``, or an object with ``get_credentials()`` (the
    SDK's ``CredentialsProvider``: ``get_access_key_id()``...). It is asked when a request fails
    authentication (expired token, unknown key: the SDK's rule), then the request is sent once more."""

    endpoint: str
    access_key_id: str = ""
    access_key_secret: str = ""
    security_token: str | None = None
    auth_version: str = "v1"
    region: str | None = None
    timeout: float = 60.0
    retry: RetryPolicy | None = None
    ssl: Any = None
    ca_bundle: str | None = None
    tls_verify: bool = True
    credentials_provider: Any = None

    def client(self) -> "AsyncClient":
        return AsyncClient.from_config(self)


_D = ClientConfig  # the defaults below are ClientConfig's (class attributes of the dataclass)
# The SDK's rule for "ask the credentials provider": these codes, or these words in the code or message.
_AUTH_CODES = {"Unauthorized", "InvalidAccessKeyId.NotFound", "SecurityToken.Expired", "InvalidAccessKeyId",
               "SecurityTokenExpired"}
_AUTH_WORDS = ("Unauthorized", "InvalidAccessKeyId", "SecurityToken")
_MIN_REFRESH_INTERVAL = 5.0  # a burst of failing requests asks the provider once


def _is_auth_error(exc: SLSError) -> bool:
    code, msg = exc.error_code, str(exc)
    return code in _AUTH_CODES or any(w in code or w in msg for w in _AUTH_WORDS)


def _call_provider(provider: Any) -> tuple[str, str, str | None]:
    """Ask a credentials provider (a callable returning a 3-tuple, or the SDK's CredentialsProvider)."""
    if hasattr(provider, "get_credentials"):
        c = provider.get_credentials()
        return c.get_access_key_id(), c.get_access_key_secret(), c.get_security_token() or None
    key_id, secret, token = provider()
    return key_id, secret, token or None


class AsyncClient:
    """An SLS API client. ``endpoint`` is a hub (``127.0.0.1:8080``) or an SLS region endpoint
    (``https://cn-hangzhou.log.aliyuncs.com``).

    For ``https://`` endpoints the certificate is verified: ``ca_bundle`` names a PEM file of CA
    certificates to trust instead of the system store (``SSL_CERT_FILE`` works too); ``tls_verify=False``
    turns verification off (testing only). ``credentials_provider``: see ``ClientConfig``."""

    def __init__(self, endpoint: str, access_key_id: str = _D.access_key_id,
                 access_key_secret: str = _D.access_key_secret, *,
                 security_token: str | None = _D.security_token, auth_version: str = _D.auth_version,
                 region: str | None = _D.region, timeout: float = _D.timeout, retry: RetryPolicy | None = _D.retry,
                 ssl: Any = _D.ssl, ca_bundle: str | None = _D.ca_bundle, tls_verify: bool = _D.tls_verify,
                 credentials_provider: Any = _D.credentials_provider) -> None:
        self.transport = Transport(endpoint, Credentials(access_key_id, access_key_secret, security_token,
                                                         auth_version, region),
                                   timeout=timeout, retry=retry, ssl=ssl, ca_bundle=ca_bundle,
                                   tls_verify=tls_verify)
        self.credentials_provider = credentials_provider
        if credentials_provider is not None:
            self._send = self.transport.request
            self._refreshed_at = float("-inf")
            self._refresh_lock: asyncio.Lock | None = None
            self.transport.request = self._request_refreshing  # type: ignore[method-assign]

    @classmethod
    def from_config(cls, config: ClientConfig) -> "AsyncClient":
        return cls(config.endpoint, config.access_key_id, config.access_key_secret,
                   security_token=config.security_token, auth_version=config.auth_version, region=config.region,
                   timeout=config.timeout, retry=config.retry, ssl=config.ssl, ca_bundle=config.ca_bundle,
                   tls_verify=config.tls_verify, credentials_provider=config.credentials_provider)

    async def _request_refreshing(self, *args: Any, **kwargs: Any) -> Any:
        """A request; when it fails authentication, new credentials from the provider and one more try."""
        used = self.transport.credentials.security_token, self.transport.credentials.access_key_id
        try:
            return await self._send(*args, **kwargs)
        except SLSError as exc:
            if not _is_auth_error(exc):
                raise
            await self.refresh_credentials(used)
            return await self._send(*args, **kwargs)

    async def refresh_credentials(self, failed: tuple[str | None, str] | None = None) -> None:
        """Ask the credentials provider for new keys (on a thread: providers may do HTTP). ``failed`` is the
        (token, key id) that failed: if another request already replaced them, nothing is asked."""
        if self._refresh_lock is None:
            self._refresh_lock = asyncio.Lock()
        async with self._refresh_lock:
            cred = self.transport.credentials
            if failed is not None and (cred.security_token, cred.access_key_id) != failed:
                return  # refreshed meanwhile by another request
            wait = self._refreshed_at + _MIN_REFRESH_INTERVAL - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._refreshed_at = time.monotonic()
            key_id, secret, token = await asyncio.to_thread(_call_provider, self.credentials_provider)
            cred.access_key_id, cred.access_key_secret, cred.security_token = key_id, secret, token

    @property
    def endpoint(self) -> str:
        return self.transport.endpoint.origin

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _json(self, method: str, resource: str, project: str | None, *, params: Sequence[tuple[str, str]] = (),
                    body: Any = None, headers: Mapping[str, str] | None = None) -> Any:
        data = b"" if body is None else json.dumps(body).encode()
        h = {"Content-Type": "application/json"} if body is not None else {}
        h.update(headers or {})
        resp = await self.transport.request(method, resource, project=project, params=params, body=data, headers=h)
        return resp.json()

    # ---------------------------------------------------------------- projects and logstores
    async def create_project(self, project: str, description: str = "") -> None:
        await self._json("POST", "/", project, body={"projectName": project, "description": description})

    async def get_project(self, project: str) -> dict[str, Any]:
        return await self._json("GET", "/", project)  # type: ignore[no-any-return]

    async def delete_project(self, project: str) -> None:
        await self._json("DELETE", "/", project)

    async def list_projects(self, *, page_size: int = LIST_PAGE_SIZE) -> list[str]:
        """Every project this key may see, paged to the end (SLS answers at most 500 a page)."""
        pages = self._pages("/", None, "projects", page_size)
        return [p["projectName"] async for p in pages]

    async def _pages(self, resource: str, project: str | None, key: str, page_size: int) -> AsyncIterator[Any]:
        """Items of a paged listing (ListProject, ListLogStores), page after page until the server has no more.

        Advances by the count the server returned, not by the size asked: a server may cap a page below it
        (SLS: 500). Stops on an empty page or at ``total``; an item seen twice (the listing shifted while we
        paged) is yielded once."""
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        offset, seen = 0, set()
        while True:
            data = await self._json("GET", resource, project, params=[("offset", str(offset)),
                                                                      ("size", str(page_size))])
            items = list(data.get(key) or [])
            for item in items:
                ident = item["projectName"] if isinstance(item, dict) else item
                if ident not in seen:
                    seen.add(ident)
                    yield item
            offset += len(items)
            total = data.get("total")
            if not items or (isinstance(total, int) and offset >= total):
                return

    async def create_logstore(self, project: str, logstore: str, *, ttl: int = 30, shard_count: int = 2) -> None:
        await self._json("POST", "/logstores", project,
                         body={"logstoreName": logstore, "ttl": ttl, "shardCount": shard_count})

    async def get_logstore(self, project: str, logstore: str) -> dict[str, Any]:
        return await self._json("GET", f"/logstores/{logstore}", project)  # type: ignore[no-any-return]

    async def delete_logstore(self, project: str, logstore: str) -> None:
        await self._json("DELETE", f"/logstores/{logstore}", project)

    async def list_logstores(self, project: str, *, page_size: int = LIST_PAGE_SIZE) -> list[str]:
        """Every logstore of ``project``, paged to the end (SLS answers at most 500 a page)."""
        return [str(name) async for name in self._pages("/logstores", project, "logstores", page_size)]

    async def list_shards(self, project: str, logstore: str) -> list[dict[str, Any]]:
        """Every shard of the logstore: ListShards is not paged (one answer holds them all)."""
        return await self._json("GET", f"/logstores/{logstore}/shards", project)  # type: ignore[no-any-return]

    async def split_shard(self, project: str, logstore: str, shard: int, key: str) -> list[dict[str, Any]]:
        resp = await self.transport.request("POST", f"/logstores/{logstore}/shards/{shard}", project=project,
                                            params=[("action", "split"), ("key", key)])
        return resp.json()  # type: ignore[no-any-return]

    async def merge_shard(self, project: str, logstore: str, shard: int) -> list[dict[str, Any]]:
        resp = await self.transport.request("POST", f"/logstores/{logstore}/shards/{shard}", project=project,
                                            params=[("action", "merge")])
        return resp.json()  # type: ignore[no-any-return]

    # ---------------------------------------------------------------- data
    async def put_log_group(self, project: str, logstore: str, group: bytes | memoryview, *,
                            compress_type: str = "lz4", hash_key: str | None = None) -> None:
        """Write one serialized LogGroup as is (no re-encoding): what dispatch uses to forward raw bytes."""
        body = compress(group, compress_type) if compress_type else bytes(group)
        headers = {"Content-Type": "application/x-protobuf", "x-log-bodyrawsize": str(len(group))}
        if compress_type:
            headers["x-log-compresstype"] = compress_type
        target, params = ("route", [("key", hash_key)]) if hash_key else ("lb", [])
        await self.transport.request("POST", f"/logstores/{logstore}/shards/{target}", project=project,
                                     params=params, headers=headers, body=body)

    async def put_log_groups(self, project: str, logstore: str, groups: Iterable[Any], *,
                             compress_type: str = "lz4", hash_key: str | None = None) -> int:
        """Write serialized LogGroups (bytes or pulled ``LazyLogGroup``s) in order, packing consecutive groups
        that differ only in their logs into one PutLogs (wire/pack.py: up to 4,096 logs / 3 MB a request).

        What a dispatcher should call with the groups a batch routes to one logstore: the logs, their times,
        topic, source and tags arrive as with one ``put_log_group`` per group, in fewer requests (group
        boundaries are not kept). Returns the number of requests sent. Stops at the first failed request,
        raising its error: the groups before it are written, the rest are not."""
        sent = 0
        for packed in pack_groups(groups):
            await self.put_log_group(project, logstore, packed.body(), compress_type=compress_type,
                                     hash_key=hash_key)
            sent += 1
        return sent

    async def put_logs(self, project: str, logstore: str, logs: Iterable[Mapping[str, Any]], *, topic: str = "",
                       source: str = "", tags: Mapping[str, str] | None = None, compress_type: str = "lz4",
                       hash_key: str | None = None) -> None:
        await self.put_log_group(project, logstore, build_log_group(logs, topic=topic, source=source, tags=tags),
                                 compress_type=compress_type, hash_key=hash_key)

    async def get_cursor(self, project: str, logstore: str, shard: int, start: str | int | float) -> str:
        where = start if isinstance(start, str) else str(int(start))
        data = await self._json("GET", f"/logstores/{logstore}/shards/{shard}", project,
                                params=[("type", "cursor"), ("from", where)])
        return str(data["cursor"])

    async def get_cursor_time(self, project: str, logstore: str, shard: int, cursor: str) -> int:
        data = await self._json("GET", f"/logstores/{logstore}/shards/{shard}", project,
                                params=[("type", "cursor_time"), ("cursor", cursor)])
        return int(data["cursor_time"])

    async def pull_logs(self, project: str, logstore: str, shard: int, cursor: str, *, count: int = 1000,
                        end_cursor: str | None = None, compress_type: str = "lz4",
                        wait: float | None = None, query: str | None = None,
                        processor: str | None = None) -> PullResult:
        """Read up to ``count`` LogGroups from ``cursor``. ``wait`` (seconds) asks a hub to hold the request
        until data arrives (long-poll); SLS ignores it."""
        params = [("type", "log"), ("cursor", cursor), ("count", str(count))]
        if end_cursor:
            params.append(("end_cursor", end_cursor))
        if query and query.strip():  # SPL consumption, sent as the SDK sends it
            params += [("pullMode", "scan_on_stream"), ("query", query)]
        if processor:
            params.append(("processor", processor))
        headers = {"Accept": "application/x-protobuf", "Accept-Encoding": compress_type}
        timeout = None
        if wait:
            headers["x-sluice-wait"] = f"{wait:g}"
            timeout = self.transport.timeout + wait
        resp = await self.transport.request("GET", f"/logstores/{logstore}/shards/{shard}", project=project,
                                            params=params, headers=headers, timeout=timeout)
        h = resp.headers
        raw_size = int(h.get("x-log-bodyrawsize", "0") or 0)
        ctype = h.get("x-log-compresstype")
        try:
            if not raw_size:
                raw = b""
            elif raw_size > _THREAD_DECOMPRESS_BYTES and ctype:
                raw = await asyncio.to_thread(decompress, resp.body, ctype, raw_size, limit=_MAX_PULL_RAW)
            else:
                raw = decompress(resp.body, ctype, raw_size, limit=_MAX_PULL_RAW)
        except Exception as exc:  # the server sent something we cannot decode
            raise WireError(f"PullLogs body could not be decoded: {exc}") from exc
        return PullResult(project, logstore, shard, cursor, h.get("x-log-cursor") or cursor,
                          int(h.get("x-log-count", "0") or 0),
                          raw, raw_size, int(h.get("x-log-rawdatacount") or -1),
                          int(h.get("x-log-rawdatasize") or -1))

    async def wait_shards(self, project: str, session: str, *, add: Sequence[tuple[str, int, str]] = (),
                          reset: bool = False, wait: float = 0.0) -> list[tuple[str, int]]:
        """Hub only (``POST /sluice/wait``; SLS has no such API and answers an error). Changes the wait
        session ``session`` of ``project`` (``reset`` empties it first; ``add``: (logstore, shard, cursor)),
        then waits up to ``wait`` seconds for any of its shards to have data past its cursor. Returns the
        ready (logstore, shard) pairs, which have left the session (hub/waits.py, consumer/waiter.py).

        Not retried: an answer lost on the way would not come a second time (its shards left the session);
        after a failure the caller sends its whole set again with ``reset``."""
        body = json.dumps({"session": session, "reset": reset, "add": [list(a) for a in add]}).encode()
        headers = {"Content-Type": "application/json", "x-sluice-wait": f"{wait:g}"}
        resp = await self.transport.request("POST", "/sluice/wait", project=project, body=body, headers=headers,
                                            timeout=self.transport.timeout + wait, retry=False)
        return [(str(ls), int(shard)) for ls, shard in resp.json()["ready"]]

    async def heartbeats(self, project: str, beats: Sequence[Mapping[str, Any]]) -> list[list[int] | SLSError]:
        """Hub only (``POST /sluice/heartbeats``; SLS has no such API and answers an error): the heartbeats of
        many consumers in one request. Each beat is ``{"logstore", "group", "consumer", "held": [...],
        "leave": bool}``; each result, in order, is the shards to hold or that beat's error (not raised: one
        bad beat does not fail the others). Retried like a Heartbeat (a beat repeated changes nothing)."""
        body = json.dumps({"beats": list(beats)}).encode()
        resp = await self.transport.request("POST", "/sluice/heartbeats", project=project, body=body,
                                            headers={"Content-Type": "application/json"})
        out: list[list[int] | SLSError] = []
        for r in resp.json()["results"]:
            if isinstance(r, dict):
                out.append(for_code(str(r.get("errorCode", "")), str(r.get("errorMessage", ""))))
            else:
                out.append([int(s) for s in r])
        return out

    # ---------------------------------------------------------------- consumer groups
    async def create_consumer_group(self, project: str, logstore: str, group: str, timeout: int,
                                    in_order: bool = False) -> None:
        await self._json("POST", f"/logstores/{logstore}/consumergroups", project,
                         body={"consumerGroup": group, "timeout": timeout, "order": in_order})

    async def update_consumer_group(self, project: str, logstore: str, group: str, *, timeout: int | None = None,
                                    in_order: bool | None = None) -> None:
        body: dict[str, Any] = {}
        if timeout is not None:
            body["timeout"] = timeout
        if in_order is not None:
            body["order"] = in_order
        await self._json("PUT", f"/logstores/{logstore}/consumergroups/{group}", project, body=body)

    async def delete_consumer_group(self, project: str, logstore: str, group: str) -> None:
        await self._json("DELETE", f"/logstores/{logstore}/consumergroups/{group}", project)

    async def list_consumer_groups(self, project: str, logstore: str) -> list[dict[str, Any]]:
        """Every consumer group of the logstore: ListConsumerGroup is not paged (one answer holds them all)."""
        return await self._json("GET", f"/logstores/{logstore}/consumergroups", project)  # type: ignore[no-any-return]

    async def heartbeat(self, project: str, logstore: str, group: str, consumer: str, held: Sequence[int], *,
                        headers: Mapping[str, str] | None = None) -> list[int]:
        data = await self._json("POST", f"/logstores/{logstore}/consumergroups/{group}", project,
                                params=[("type", "heartbeat"), ("consumer", consumer)], body=list(held),
                                headers=headers)
        return [int(s) for s in data]

    async def update_checkpoint(self, project: str, logstore: str, group: str, shard: int, checkpoint: str, *,
                                consumer: str = "", force: bool = False) -> None:
        await self._json("POST", f"/logstores/{logstore}/consumergroups/{group}", project,
                         params=[("type", "checkpoint"), ("consumer", consumer),
                                 ("forceSuccess", "true" if force else "false")],
                         body={"shard": shard, "checkpoint": checkpoint})

    async def get_checkpoints(self, project: str, logstore: str, group: str,
                              shard: int | None = None) -> list[dict[str, Any]]:
        params = [("shard", str(shard))] if shard is not None else []
        return await self._json("GET", f"/logstores/{logstore}/consumergroups/{group}", project,  # type: ignore[no-any-return]
                                params=params)

