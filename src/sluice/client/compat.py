"""A drop-in for the official SDK's blocking ``aliyun.log.LogClient`` (and the request/response/exception
classes programs use with it), on sluice's client and HTTP layer. Public as ``sluice.compat``::

    from sluice.compat import *        # was: from aliyun.log import *

Why: a consumer program written for the SDK forwards with ``LogClient.put_log_raw`` and sets itself up with
``create_logstore``/``list_consumer_group``...; on the SDK's client (requests, a protobuf re-encode per
group) that writing cost more CPU than sluice's whole consumer. Here a pulled group's received bytes are
sent as they are, over sluice's connection pool.

Same arguments, return objects (the getters programs call: ``get_cursor()``, ``get_shards_info()``,
``get_consumer_groups()``, ``get_request_id()``...) and exceptions (``LogException`` with the server's error
code, message and request id; client-side failures as the SDK names them: ``LogRequestError``) as far as
programs observe them. A call of the SDK's that is not covered raises ``UnsupportedCall`` (an
AttributeError) naming it, at attribute access, so ``partial(client.unsupported_call, ...)`` fails at once.

Each call runs on one event loop thread shared by every LogClient of the process (started on first use).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import re
import socket
import threading
import time
import weakref
from datetime import datetime
from typing import Any, Callable, Coroutine, Iterable

from ..wire import errors as E
from ._async import AsyncClient, PullResult
from ._blocking import BlockingConnection, ExchangeFailed

__all__ = [
    "LogClient",
    "LogException",
    "LogItem",
    "PutLogsRequest",
    "LogResponse",
    "PutLogsResponse",
    "PullLogResponse",
    "GetCursorResponse",
    "GetCursorTimeResponse",
    "ListShardResponse",
    "ListLogstoresResponse",
    "ListProjectResponse",
    "GetProjectResponse",
    "GetLogStoreResponse",
    "ConsumerGroupEntity",
    "ListConsumerGroupResponse",
    "ConsumerGroupCheckPointResponse",
    "ConsumerGroupHeartBeatResponse",
    "UnsupportedCall",
    "sdk_time",
]


# ============================================================================== exceptions
class LogException(Exception):
    """The SDK's ``LogException``: ``get_error_code()``, ``get_error_message()``, ``get_request_id()``,
    ``get_resp_status()``; ``str()`` is the SDK's JSON."""

    def __init__(self, errorCode: str, errorMessage: str, requestId: str = "", resp_status: int = 200,  # noqa: N803
                 resp_header: Any = "", resp_body: str = "") -> None:
        super().__init__(errorCode, errorMessage)
        self._errorCode = errorCode
        self._errorMessage = errorMessage
        self._requestId = requestId
        self.resp_status = resp_status
        self.resp_header = resp_header
        self.resp_body = resp_body or json.dumps({"errorCode": errorCode, "errorMessage": errorMessage,
                                                  "requestId": requestId})

    def __str__(self) -> str:
        return json.dumps({"errorCode": self._errorCode, "errorMessage": self._errorMessage,
                           "requestId": self._requestId}, sort_keys=True)

    def get_error_code(self) -> str:
        return self._errorCode

    def get_error_message(self) -> str:
        return self._errorMessage

    def get_request_id(self) -> str:
        return self._requestId

    def get_resp_body(self) -> str:
        return self.resp_body

    def get_resp_status(self) -> int:
        return self.resp_status


class UnsupportedCall(AttributeError):
    """An SDK call sluice's LogClient does not cover (use ``aliyun.log.LogClient`` for it)."""


def as_log_exception(exc: BaseException) -> LogException:
    """A sluice error as the SDK's LogException (server errors keep code, message, request id, status)."""
    if isinstance(exc, E.SLSError):
        return LogException(exc.error_code, str(exc), exc.request_id or "", exc.http_status)
    return LogException("LogRequestError", str(exc), "", -1)


_PLAIN_DATE = re.compile(r"^\s*(\d{4})-(\d{1,2})-(\d{1,2})[ T](\d{1,2}):(\d{1,2}):(\d{1,2})\s*$")


def sdk_time(value: Any) -> str:
    """A start/end time as the SDK reads it (``aliyun.log.util.parse_timestamp``): "begin"/"end", unix
    seconds (number or digits), or a date in any form ``dateutil`` parses ("2018-12-26 0:0:0",
    "2018-12-26T08:00:00+8:00", ...); a date without a zone is LOCAL time, as in the SDK. Returns
    GetCursor's ``from``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(int(value))
    text = value.decode() if isinstance(value, bytes) else str(value)
    if text in ("begin", "end") or text.isdigit():
        return text
    m = _PLAIN_DATE.match(text)
    if m:  # the seeds' form, read as dateutil reads it (a naive datetime, local time) without importing it
        return str(int(datetime(*(int(g) for g in m.groups())).timestamp()))  # type: ignore[misc]
    from dateutil import parser  # noqa: PLC0415 - imported only for other forms (~35 ms of start-up CPU)
    try:
        return str(int(parser.parse(text).timestamp()))
    except (ValueError, OverflowError) as exc:
        raise E.ConfigError(f"cursor time {value!r}: {exc}") from None


# ============================================================================== requests
class LogItem:
    """The SDK's ``LogItem``: a time (seconds; milliseconds are divided), its nanosecond part, and a list of
    (key, value) contents."""

    def __init__(self, timestamp: int | None = None, contents: list[tuple[str, str]] | None = None,
                 time_nano_part: int | None = None) -> None:
        nano = time.time_ns()
        self.timestamp = int(timestamp) if timestamp else nano // 1_000_000_000
        if self.timestamp > 1e10:
            self.timestamp = int(self.timestamp / 1000.0)
        self.time_nano_part = int(time_nano_part) if time_nano_part else nano % 1_000_000_000
        self.contents = copy.deepcopy(contents) if contents else []

    def push_back(self, key: str, value: str) -> None:
        self.contents.append((key, value))

    def get_contents(self) -> list[tuple[str, str]]:
        return self.contents

    def set_contents(self, contents: list[tuple[str, str]]) -> None:
        self.contents = copy.deepcopy(contents)

    def get_time(self) -> int:
        return self.timestamp

    def set_time(self, timestamp: int) -> None:
        self.timestamp = int(timestamp)

    def get_time_nano_part(self) -> int:
        return self.time_nano_part

    def set_time_nano_part(self, time_nano_part: int) -> None:
        self.time_nano_part = int(time_nano_part)

    def log_print(self) -> None:
        print("time", self.timestamp)
        print("contents", self.contents)


class PutLogsRequest:
    """The SDK's ``PutLogsRequest`` (same constructor, getters and setters)."""

    def __init__(self, project: str | None = None, logstore: str | None = None, topic: str | None = None,
                 source: str | None = None, logitems: list[LogItem] | None = None, hashKey: str | None = None,  # noqa: N803
                 compress: bool = True, logtags: list[tuple[str, str]] | None = None,
                 compress_type: str | None = None) -> None:
        self.project = project
        self.logstore = logstore
        self.topic = topic
        self.source = source
        self.logitems = logitems
        self.hashkey = hashKey
        self.compress = compress
        self.logtags = logtags
        self.compress_type = compress_type

    def get_project(self) -> str | None:
        return self.project

    def set_project(self, project: str) -> None:
        self.project = project

    def get_logstore(self) -> str | None:
        return self.logstore

    def set_logstore(self, logstore: str) -> None:
        self.logstore = logstore

    def get_topic(self) -> str | None:
        return self.topic

    def set_topic(self, topic: str) -> None:
        self.topic = topic

    def get_source(self) -> str | None:
        return self.source

    def set_source(self, source: str) -> None:
        self.source = source

    def get_log_items(self) -> list[LogItem] | None:
        return self.logitems

    def set_log_items(self, logitems: list[LogItem]) -> None:
        self.logitems = logitems

    def get_hash_key(self) -> str | None:
        return self.hashkey

    def set_hash_key(self, key: str) -> None:
        self.hashkey = key

    def get_compress(self) -> bool:
        return self.compress

    def set_compress(self, compress: bool) -> None:
        self.compress = compress

    def get_log_tags(self) -> list[tuple[str, str]] | None:
        return self.logtags

    def set_log_tags(self, logtags: list[tuple[str, str]]) -> None:
        self.logtags = logtags

    def get_compress_type(self) -> str | None:
        return self.compress_type


# ============================================================================== responses
class LogResponse:
    """Base of every response: the HTTP headers (``get_request_id()``...) and the body."""

    def __init__(self, headers: Any, body: Any = "") -> None:
        self.headers = dict(headers) if headers is not None else {}
        self.body = "" if body is None else body

    def get_request_id(self) -> str:
        return str(self.headers.get("x-log-requestid", ""))

    def get_body(self) -> Any:
        return self.body

    def get_all_headers(self) -> dict[str, str]:
        return self.headers

    def get_header(self, key: str) -> str:
        return self.headers.get(key, "")

    def log_print(self) -> None:
        print("header: ", self.headers)


class PutLogsResponse(LogResponse):
    pass


class GetCursorResponse(LogResponse):
    def __init__(self, resp: dict[str, Any], header: Any) -> None:
        super().__init__(header, resp)
        self.cursor = str(resp["cursor"])

    def get_cursor(self) -> str:
        return self.cursor


class GetCursorTimeResponse(LogResponse):
    def __init__(self, resp: dict[str, Any], header: Any) -> None:
        super().__init__(header, resp)
        self.cursor_time = int(resp["cursor_time"])

    def get_cursor_time(self) -> int:
        return self.cursor_time


class ListShardResponse(LogResponse):
    def __init__(self, resp: list[dict[str, Any]], header: Any) -> None:
        super().__init__(header, resp)
        self._shards = resp

    def get_shards_info(self) -> list[dict[str, Any]]:
        return self._shards

    @property
    def shards(self) -> list[dict[str, Any]]:
        return self._shards

    @property
    def count(self) -> int:
        return len(self._shards)


class ListLogstoresResponse(LogResponse):
    def __init__(self, resp: dict[str, Any], header: Any) -> None:
        super().__init__(header, resp)
        self.count = resp["count"]
        self.total = resp["total"]
        self.logstores = resp.get("logstores", [])

    def get_count(self) -> int:
        return self.count

    def get_total(self) -> int:
        return self.total

    def get_logstores(self) -> list[str]:
        return self.logstores


class ListProjectResponse(LogResponse):
    def __init__(self, resp: dict[str, Any], header: Any) -> None:
        super().__init__(header, resp)
        self.count = int(resp["count"])
        self.total = int(resp["total"])
        self.projects = resp.get("projects", [])

    def get_count(self) -> int:
        return self.count

    def get_total(self) -> int:
        return self.total

    def get_projects(self) -> list[dict[str, Any]]:
        return self.projects


class GetProjectResponse(LogResponse):
    def __init__(self, resp: dict[str, Any], header: Any) -> None:
        super().__init__(header, resp)
        self.status = resp.get("status", "Normal")
        self.description = resp.get("description", "")
        self.projectName = resp.get("projectName", "")  # noqa: N815 - the SDK's name
        self.region = resp.get("region", "")
        self.owner = resp.get("owner", "")
        self.createTime = resp.get("createTime", "")  # noqa: N815
        self.lastModifyTime = resp.get("lastModifyTime", "")  # noqa: N815

    def get_owner(self) -> str:
        return self.owner

    def get_status(self) -> str:
        return self.status

    def get_description(self) -> str:
        return self.description

    def get_projectname(self) -> str:
        return self.projectName

    def get_region(self) -> str:
        return self.region

    def get_create_time(self) -> Any:
        return self.createTime

    def get_last_modify_time(self) -> Any:
        return self.lastModifyTime


class GetLogStoreResponse(LogResponse):
    def __init__(self, resp: dict[str, Any], header: Any) -> None:
        super().__init__(header, resp)
        self.logstore_name = resp.get("logstoreName", "")
        self.ttl = int(resp.get("ttl", 0))
        self.shard_count = int(resp.get("shardCount", 0))
        self.enable_tracking = bool(resp.get("enable_tracking", False))
        self.auto_split = bool(resp.get("autoSplit", False))
        self.max_split_shard = int(resp.get("maxSplitShard", 0))
        self.append_meta = bool(resp.get("appendMeta", False))
        self.telemetry_type = resp.get("telemetryType", "")
        self.mode = resp.get("mode", "standard")

    def get_logstore_name(self) -> str:
        return self.logstore_name

    def get_ttl(self) -> int:
        return self.ttl

    def get_shard_count(self) -> int:
        return self.shard_count

    def get_enable_tracking(self) -> bool:
        return self.enable_tracking

    def get_auto_split(self) -> bool:
        return self.auto_split

    def get_max_split_shard(self) -> int:
        return self.max_split_shard

    def get_append_meta(self) -> bool:
        return self.append_meta

    def get_telemetry_type(self) -> str:
        return self.telemetry_type

    def get_mode(self) -> str:
        return self.mode


class ConsumerGroupEntity:
    def __init__(self, consumer_group_name: str, timeout: int, in_order: bool = False) -> None:
        self.consumer_group_name = consumer_group_name
        self.timeout = timeout
        self.in_order = in_order

    def get_consumer_group_name(self) -> str:
        return self.consumer_group_name

    def set_consumer_group_name(self, name: str) -> None:
        self.consumer_group_name = name

    def get_timeout(self) -> int:
        return self.timeout

    def set_timeout(self, timeout: int) -> None:
        self.timeout = timeout

    def is_in_order(self) -> bool:
        return self.in_order

    def set_in_order(self, in_order: bool) -> None:
        self.in_order = in_order

    def to_request_json(self) -> str:
        return json.dumps({"consumerGroup": self.consumer_group_name, "timeout": self.timeout,
                           "order": self.in_order})

    def to_string(self) -> str:
        return f"ConsumerGroup [consumerGroupName={self.consumer_group_name}, timeout={self.timeout}, " \
               f"inOrder={self.in_order}]"


class ListConsumerGroupResponse(LogResponse):
    def __init__(self, resp: list[dict[str, Any]], headers: Any) -> None:
        super().__init__(headers, resp)
        self.resp = resp
        self.consumer_groups = [ConsumerGroupEntity(g["name"], g["timeout"], g["order"]) for g in resp]

    def get_count(self) -> int:
        return len(self.consumer_groups)

    @property
    def count(self) -> int:
        return len(self.consumer_groups)

    def get_consumer_groups(self) -> list[ConsumerGroupEntity]:
        return self.consumer_groups


class ConsumerGroupCheckPointResponse(LogResponse):
    def __init__(self, resp: list[dict[str, Any]], headers: Any) -> None:
        super().__init__(headers, resp)
        self.count = len(resp)
        self.consumer_group_check_poins = resp  # sic: the SDK's attribute name

    def get_count(self) -> int:
        return self.count

    def get_consumer_group_check_points(self) -> list[dict[str, Any]]:
        return self.consumer_group_check_poins

    def check_checkpoint(self, client: "LogClient", project_name: str, logstore_name: str) -> None:
        for cp in self.consumer_group_check_poins:
            if cp["checkpoint"]:
                ret = client.get_previous_cursor_time(project_name, logstore_name, cp["shard"], cp["checkpoint"])
                cp["checkpoint_previous_cursor_time"] = ret.get_cursor_time()


class ConsumerGroupHeartBeatResponse(LogResponse):
    def __init__(self, resp: list[int], headers: Any) -> None:
        super().__init__(headers, resp)
        self.shards = resp

    def get_shards(self) -> list[int]:
        return self.shards

    def set_shards(self, shards: list[int]) -> None:
        self.shards = shards


class PullLogResponse(LogResponse):
    """The SDK's ``PullLogResponse``: ``get_loggroup_list()`` gives the SDK-shaped groups decoded from the
    received bytes (client/sdkobjects.py); their ``SerializeToString()`` is those bytes, so
    ``put_log_raw`` of a pulled group forwards it as received."""

    def __init__(self, result: PullResult, headers: Any) -> None:
        super().__init__(headers, None)
        self._result = result
        self.next_cursor = result.next_cursor
        self.raw_size = result.raw_size
        self.raw_log_group_count_before_query = result.raw_count_before_query
        self.raw_size_before_query = result.raw_size_before_query
        self._groups: Any = None
        self.flatten_logs_json: list[dict[str, Any]] | None = None

    @property
    def loggroup_list(self) -> Any:
        if self._groups is None:
            from .sdkobjects import SDKLogGroupList  # noqa: PLC0415 - lazily: a client that never pulls skips it
            self._groups = SDKLogGroupList.of(self._result.batch())
        return self._groups

    def get_loggroup_list(self) -> Any:
        return self.loggroup_list

    def get_next_cursor(self) -> str:
        return self.next_cursor

    def get_loggroup_count(self) -> int:
        return self._result.count

    def get_loggroup(self, index: int) -> Any:
        groups = self.loggroup_list.LogGroups
        return groups[index] if 0 <= index < len(groups) else None

    def get_raw_size(self) -> int:
        return self.raw_size

    def get_raw_log_group_count_before_query(self) -> int:
        return self.raw_log_group_count_before_query

    def get_raw_size_before_query(self) -> int:
        return self.raw_size_before_query

    def get_flatten_logs_json(self, time_as_str: bool | None = None, decode_bytes: bool | None = None) -> list[dict[str, Any]]:
        if self.flatten_logs_json is None:
            from .sdkobjects import flatten  # noqa: PLC0415
            self.flatten_logs_json = flatten(self.loggroup_list, time_as_str, decode_bytes)
        return self.flatten_logs_json

    def get_flatten_logs_json_auto(self) -> list[dict[str, Any]]:
        return self.get_flatten_logs_json(time_as_str=True)

    def get_log_count(self) -> int:
        return len(self.get_flatten_logs_json())

    @property
    def log_count(self) -> int:
        return self.get_log_count()

    def get_body(self) -> dict[str, Any]:
        logs = self.get_flatten_logs_json()
        return {"next_cursor": self.next_cursor, "count": len(logs), "logs": logs}


# ============================================================================== the client
class _Loop:
    """One event loop thread shared by every LogClient of the process, for calls made from a thread that is
    already running an event loop (where a call cannot block that loop's thread)."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None or cls._loop.is_closed():
                import uvloop  # noqa: PLC0415 - cheaper per request than asyncio's loop

                loop = uvloop.new_event_loop()
                threading.Thread(target=loop.run_forever, name="sluice-logclient", daemon=True).start()
                cls._loop = loop
            return cls._loop


_SUPPORTED = frozenset()  # filled below: the public names LogClient defines


class LogClient:
    """The SDK's ``LogClient(endpoint, accessKeyId, accessKey, securityToken=None, source=None,
    auth_version='v1', region='', credentials_provider=None)``, blocking, for the calls consumer programs
    and the seeds make (docs/consumer.md lists them); other SDK calls raise ``UnsupportedCall``."""

    def __init__(self, endpoint: str, accessKeyId: str | None = None, accessKey: str | None = None,  # noqa: N803
                 securityToken: str | None = None, source: str | None = None, auth_version: str = "v1",  # noqa: N803
                 region: str = "", credentials_provider: Any = None) -> None:
        self._endpoint = endpoint
        self._source = source
        self._provider = credentials_provider
        self._client = self._new_client()
        self._credentials = self._client.transport.credentials  # shared by the per-thread clients below
        self._credentials.access_key_id, self._credentials.access_key_secret = accessKeyId or "", accessKey or ""
        self._credentials.security_token = securityToken or None
        self._credentials.auth_version, self._credentials.region = auth_version, region or None
        self._local = threading.local()
        self._loops: list[tuple[asyncio.AbstractEventLoop, AsyncClient]] = []  # per-thread, for close()
        # per-thread blocking connections, for close(); held by their thread's local, so they go with it
        self._conns: weakref.WeakSet[BlockingConnection] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._shared_used = False

    def close(self) -> None:
        """Close the connections and the per-thread event loops (the SDK's LogClient has no close; this one is
        also closed when garbage-collected)."""
        with self._lock:
            loops, self._loops = self._loops, []
            conns, self._conns = list(self._conns), weakref.WeakSet()
            shared_used, self._shared_used = self._shared_used, False
        for conn in conns:
            conn.close()
        if loops:
            if asyncio._get_running_loop() is None:
                _close_loops(loops)
            else:  # called (or collected) inside a running loop: this thread cannot run another one
                t = threading.Thread(target=_close_loops, args=(loops,), name="sluice-logclient-close")
                t.start()
                t.join(10)
        if shared_used:
            try:
                asyncio.run_coroutine_threadsafe(self._client.aclose(), _Loop.get()).result(10)
            except Exception:  # noqa: BLE001 - best effort at exit
                pass
        self._local = threading.local()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass

    def _new_client(self) -> AsyncClient:
        c = AsyncClient(self._endpoint, credentials_provider=self._provider)
        if hasattr(self, "_credentials"):
            c.transport.credentials = self._credentials
        return c

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        raise UnsupportedCall(f"LogClient.{name} is not supported by sluice.compat.LogClient (supported: "
                              f"{', '.join(sorted(_SUPPORTED))}); use aliyun.log.LogClient for it")

    # ------------------------------------------------------------------ plumbing
    def _run(self, call: Callable[[AsyncClient], Coroutine[Any, Any, Any]]) -> Any:
        """Run ``call(client)`` to completion. On the calling thread, with that thread's own loop and client
        (a hand-off to another thread and back cost ~100 us of CPU per call, a sixth of a forwarded group's
        put); from a thread already running a loop, on the shared loop thread instead."""
        try:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                local = self._local
                loop = getattr(local, "loop", None)
                if loop is None:  # asyncio's loop: its run_until_complete costs less per call than uvloop's
                    loop = local.loop = asyncio.new_event_loop()
                    local.client = self._new_client()
                    with self._lock:
                        self._loops.append((loop, local.client))
                return loop.run_until_complete(call(local.client))
            self._shared_used = True
            return asyncio.run_coroutine_threadsafe(call(self._client), _Loop.get()).result()
        except E.SluiceError as exc:
            raise as_log_exception(exc) from None

    def _request(self, method: str, resource: str, project: str | None, params: Iterable[tuple[str, str]] = (),
                 body: Any = None, headers: dict[str, str] | None = None, raw: bytes | None = None) -> Any:
        h = dict(headers or {})
        data = b""
        if raw is not None:
            data = raw
        elif body is not None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        plist = list(params)
        resp = self._request_blocking(method, resource, project, plist, h, data)
        if resp is not None:
            return resp
        return self._run(lambda c: c.transport.request(method, resource, project=project, params=plist, body=data,
                                                       headers=h))

    def _request_blocking(self, method: str, resource: str, project: str | None, params: list[tuple[str, str]],
                          headers: dict[str, str], body: bytes) -> Any:
        """The first attempt of a call made from a thread that runs no event loop (a processor's), on that
        thread's own blocking connection (client/_blocking.py: ~150-200 us of CPU less per call than a
        coroutine on the thread's loop). Returns the response, raises the LogException of a definite error,
        or returns None: no complete answer, or one the regular path must handle (retries, a retriable or
        server error, an auth error with a credentials provider); that path then sends the request again."""
        try:
            asyncio.get_running_loop()
            return None
        except RuntimeError:
            pass
        transport = self._client.transport
        try:
            host, port, head, rest, _ = transport.prepare(method, resource, project, params, headers, body)
        except E.SluiceError:
            return None  # the regular path raises it the regular way
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or conn.key != (host, port):
            if conn is not None:
                conn.close()
            conn = local.conn = BlockingConnection(host, port, transport.ssl, transport.timeout)
            with self._lock:
                self._conns.add(conn)
        try:
            status, rheaders, data = conn.exchange(head, rest)
        except ExchangeFailed:
            return None
        try:
            return transport.interpret(status, rheaders, data)
        except E.SLSError as exc:
            if exc.retriable or exc.http_status >= 500 or self._provider is not None:
                return None
            raise as_log_exception(exc) from None

    def _json(self, *args: Any, **kwargs: Any) -> tuple[Any, dict[str, str]]:
        resp = self._request(*args, **kwargs)
        return resp.json(), dict(resp.headers)

    def set_credentials_auto_refresher(self, refresher: Any) -> None:
        """The SDK's hook for rotating keys: ``refresher()`` returns (key id, secret, token)."""
        self.close()
        self._provider = refresher
        self._client = self._new_client()

    # ------------------------------------------------------------------ data
    def put_log_raw(self, project: str, logstore: str, log_group: Any, compress: bool | None = None) -> PutLogsResponse:
        """Write one LogGroup; a group pulled by sluice is sent as the bytes it arrived in."""
        payload = getattr(log_group, "payload", None)
        body = payload if payload is not None else log_group.SerializeToString()
        ctype = "lz4" if compress is None or compress else ""
        return self._put(project, logstore, body, ctype, None)

    def _put(self, project: str, logstore: str, body: Any, ctype: str, hash_key: str | None) -> PutLogsResponse:
        from ..wire.compress import compress as _compress  # noqa: PLC0415

        headers = {"Content-Type": "application/x-protobuf", "x-log-bodyrawsize": str(len(body))}
        if ctype:
            headers["x-log-compresstype"] = ctype
            data = _compress(body, ctype)
        else:
            data = bytes(body)
        target, params = ("route", [("key", hash_key)]) if hash_key is not None else ("lb", [])
        resp = self._request("POST", f"/logstores/{logstore}/shards/{target}", project, params, headers=headers,
                             raw=data)
        return PutLogsResponse(resp.headers, "")

    def put_logs(self, request: PutLogsRequest) -> PutLogsResponse:
        from ..wire.loggroup import LogGroup  # noqa: PLC0415

        items = request.get_log_items() or []
        if len(items) > 512000:
            raise LogException("InvalidLogSize", f"logItems' length exceeds maximum limitation: 512000 lines. "
                                                 f"now: {len(items)}")
        g = LogGroup()
        g.Topic = request.get_topic() or ""
        source = request.get_source()
        if not source:
            if self._source is None:
                self._source = _host_ip(request.get_project() or "", self._client.transport.endpoint.host)
            source = self._source
        g.Source = source
        for item in items:
            log = g.Logs.add()
            log.Time = item.get_time()
            log.Time_ns = item.get_time_nano_part()
            for key, value in item.get_contents():
                c = log.Contents.add()
                c.Key = key.decode() if isinstance(key, bytes) else key
                c.Value = value.decode() if isinstance(value, bytes) else value
        for key, value in request.get_log_tags() or []:
            t = g.LogTags.add()
            t.Key, t.Value = key, value
        body = g.SerializeToString()
        if len(body) > 30 * 1024 * 1024:
            raise LogException("InvalidLogSize", f"logItems' size exceeds maximum limitation: 30 MB. now: "
                                                 f"{len(body) / 1024.0 / 1024} MB.")
        compress = request.get_compress() is None or request.get_compress()
        return self._put(request.get_project() or "", request.get_logstore() or "", body,
                         (request.get_compress_type() or "lz4") if compress else "", request.get_hash_key())

    def pull_logs(self, project_name: str, logstore_name: str, shard_id: int, cursor: str, count: int | None = None,
                  end_cursor: str | None = None, compress: bool | None = None, query: str | None = None,
                  accept_compress_type: str | None = None, processor: str | None = None) -> PullLogResponse:
        ctype = "" if compress is False else (accept_compress_type or "lz4")
        result, headers = self._run(lambda c: self._pull(c, project_name, logstore_name, int(shard_id), cursor,
                                                         count or 1000, end_cursor, ctype, query, processor))
        return PullLogResponse(result, headers)

    async def _pull(self, client: AsyncClient, *args: Any) -> tuple[PullResult, dict[str, str]]:
        project, logstore, shard, cursor, count, end_cursor, ctype, query, processor = args
        result = await client.pull_logs(project, logstore, shard, cursor, count=count, end_cursor=end_cursor,
                                              compress_type=ctype, query=query, processor=processor)
        return result, {"x-log-cursor": result.next_cursor, "x-log-count": str(result.count),
                        "x-log-bodyrawsize": str(result.raw_size)}

    def get_cursor(self, project_name: str, logstore_name: str, shard_id: int, start_time: Any) -> GetCursorResponse:
        data, headers = self._json("GET", f"/logstores/{logstore_name}/shards/{int(shard_id)}", project_name,
                                   [("type", "cursor"), ("from", sdk_time(start_time))])
        return GetCursorResponse(data, headers)

    def get_begin_cursor(self, project_name: str, logstore_name: str, shard_id: int) -> GetCursorResponse:
        return self.get_cursor(project_name, logstore_name, shard_id, "begin")

    def get_end_cursor(self, project_name: str, logstore_name: str, shard_id: int) -> GetCursorResponse:
        return self.get_cursor(project_name, logstore_name, shard_id, "end")

    def get_cursor_time(self, project_name: str, logstore_name: str, shard_id: int, cursor: str) -> GetCursorTimeResponse:
        data, headers = self._json("GET", f"/logstores/{logstore_name}/shards/{int(shard_id)}", project_name,
                                   [("type", "cursor_time"), ("cursor", cursor)])
        return GetCursorTimeResponse(data, headers)

    def get_previous_cursor_time(self, project_name: str, logstore_name: str, shard_id: int, cursor: str,
                                 normalize: bool = True) -> GetCursorTimeResponse:
        """The time of the cursor before ``cursor`` (the SDK's rule, out-of-range cursors normalized)."""
        try:
            prev = int(base64.b64decode(cursor)) - 1
        except (ValueError, TypeError):
            raise LogException("InvalidCursor", f"Cursor {cursor} is invalid") from None

        def enc(n: int) -> str:
            return base64.b64encode(str(n).encode()).decode().strip()
        try:
            return self.get_cursor_time(project_name, logstore_name, shard_id, enc(prev))
        except LogException as exc:
            if not normalize or exc.get_error_code() != "InvalidCursor":
                raise
            begin = int(base64.b64decode(self.get_begin_cursor(project_name, logstore_name, shard_id).get_cursor()))
            if prev < begin:
                return self.get_cursor_time(project_name, logstore_name, shard_id, enc(begin))
            end = int(base64.b64decode(self.get_end_cursor(project_name, logstore_name, shard_id).get_cursor()))
            if prev > end:
                return self.get_cursor_time(project_name, logstore_name, shard_id, enc(end))
            raise

    def list_shards(self, project_name: str, logstore_name: str) -> ListShardResponse:
        data, headers = self._json("GET", f"/logstores/{logstore_name}/shards", project_name)
        return ListShardResponse(data, headers)

    # ------------------------------------------------------------------ projects and logstores
    def create_project(self, project_name: str, project_des: str = "", resource_group_id: str = "",
                       data_redundancy_type: str | None = None) -> LogResponse:
        body: dict[str, Any] = {"projectName": project_name, "description": project_des}
        if resource_group_id:
            body["resourceGroupId"] = resource_group_id
        if data_redundancy_type:
            body["dataRedundancyType"] = data_redundancy_type
        resp = self._request("POST", "/", project_name, body=body)
        return LogResponse(resp.headers, "")

    def get_project(self, project_name: str) -> GetProjectResponse:
        data, headers = self._json("GET", "/", project_name)
        return GetProjectResponse(data, headers)

    def delete_project(self, project_name: str) -> LogResponse:
        resp = self._request("DELETE", "/", project_name)
        return LogResponse(resp.headers, "")

    def list_project(self, offset: int = 0, size: int = 100, project_name_pattern: str | None = None,
                     resource_group_id: str | None = None) -> ListProjectResponse:
        params = [("offset", str(offset)), ("size", str(size))]
        if project_name_pattern:
            params.append(("projectName", project_name_pattern))
        data, headers = self._json("GET", "/", None, params)
        return ListProjectResponse(data, headers)

    def create_logstore(self, project_name: str, logstore_name: str, ttl: int = 30, shard_count: int = 2,
                        enable_tracking: bool = False, append_meta: bool = False, auto_split: bool = True,
                        max_split_shard: int = 64, preserve_storage: bool = False, encrypt_conf: Any = None,
                        telemetry_type: str = "", hot_ttl: int = -1, mode: str | None = None,
                        infrequent_access_ttl: int = -1, enable_modify: bool = False) -> LogResponse:
        """The SDK's request body; what the server does with each option is the server's (the hub:
        docs/consumer.md)."""
        if preserve_storage:
            ttl = 3650
        if telemetry_type not in ("Metrics", "None", "", "Event"):
            telemetry_type = ""
        body: dict[str, Any] = {"logstoreName": logstore_name, "ttl": int(ttl), "shardCount": int(shard_count),
                                "enable_tracking": enable_tracking, "autoSplit": auto_split,
                                "maxSplitShard": max_split_shard, "appendMeta": append_meta,
                                "telemetryType": telemetry_type}
        if enable_modify:
            body["enableModify"] = enable_modify
        if hot_ttl != -1:
            body["hot_ttl"] = hot_ttl
        if encrypt_conf is not None:
            body["encrypt_conf"] = encrypt_conf
        if mode is not None:
            body["mode"] = mode
        if infrequent_access_ttl >= 0:
            body["infrequentAccessTTL"] = infrequent_access_ttl
        resp = self._request("POST", "/logstores", project_name, body=body)
        return LogResponse(resp.headers, "")

    def get_logstore(self, project_name: str, logstore_name: str) -> GetLogStoreResponse:
        data, headers = self._json("GET", f"/logstores/{logstore_name}", project_name)
        return GetLogStoreResponse(data, headers)

    def delete_logstore(self, project_name: str, logstore_name: str) -> LogResponse:
        resp = self._request("DELETE", f"/logstores/{logstore_name}", project_name)
        return LogResponse(resp.headers, "")

    def list_logstore(self, project_name: str, logstore_name_pattern: str | None = None, offset: int = 0,
                      size: int = 100) -> ListLogstoresResponse:
        params = [("offset", str(offset)), ("size", str(size))]
        if logstore_name_pattern:
            params.append(("logstoreName", logstore_name_pattern))
        data, headers = self._json("GET", "/logstores", project_name, params)
        return ListLogstoresResponse(data, headers)

    # ------------------------------------------------------------------ consumer groups
    def _cg(self, logstore: str, group: str | None = None) -> str:
        return f"/logstores/{logstore}/consumergroups" + (f"/{group}" if group else "")

    def create_consumer_group(self, project: str, logstore: str, consumer_group: str, timeout: int,
                              in_order: bool = False) -> LogResponse:
        resp = self._request("POST", self._cg(logstore), project,
                             body={"consumerGroup": consumer_group, "timeout": timeout, "order": in_order})
        return LogResponse(resp.headers, "")

    def update_consumer_group(self, project: str, logstore: str, consumer_group: str, timeout: int | None = None,
                              in_order: bool | None = None) -> LogResponse:
        if in_order is None and timeout is None:
            raise ValueError("in_order and timeout can't all be None")
        body: dict[str, Any] = {}
        if in_order is not None:
            body["order"] = in_order
        if timeout is not None:
            body["timeout"] = timeout
        resp = self._request("PUT", self._cg(logstore, consumer_group), project, body=body)
        return LogResponse(resp.headers, "")

    def delete_consumer_group(self, project: str, logstore: str, consumer_group: str) -> LogResponse:
        resp = self._request("DELETE", self._cg(logstore, consumer_group), project)
        return LogResponse(resp.headers, "")

    def list_consumer_group(self, project: str, logstore: str) -> ListConsumerGroupResponse:
        data, headers = self._json("GET", self._cg(logstore), project)
        return ListConsumerGroupResponse(data, headers)

    def update_check_point(self, project: str, logstore: str, consumer_group: str, shard: int, check_point: str,
                           consumer: str = "", force_success: bool = True) -> LogResponse:
        resp = self._request("POST", self._cg(logstore, consumer_group), project,
                             [("type", "checkpoint"), ("consumer", consumer),
                              ("forceSuccess", "true" if force_success else "false")],
                             body={"shard": int(shard), "checkpoint": check_point})
        return LogResponse(resp.headers, "")

    def get_check_point(self, project: str, logstore: str, consumer_group: str,
                        shard: int = -1) -> ConsumerGroupCheckPointResponse:
        params = [("shard", str(shard))] if shard is not None and int(shard) >= 0 else []
        data, headers = self._json("GET", self._cg(logstore, consumer_group), project, params)
        return ConsumerGroupCheckPointResponse(data, headers)

    def get_check_point_fixed(self, project: str, logstore: str, consumer_group: str,
                              shard: int = -1) -> ConsumerGroupCheckPointResponse:
        res = self.get_check_point(project, logstore, consumer_group, shard)
        res.check_checkpoint(self, project, logstore)
        return res

    def heart_beat(self, project: str, logstore: str, consumer_group: str, consumer: str,
                   shards: list[int] | None = None) -> ConsumerGroupHeartBeatResponse:
        data, headers = self._json("POST", self._cg(logstore, consumer_group), project,
                                   [("type", "heartbeat"), ("consumer", consumer)], body=list(shards or []))
        return ConsumerGroupHeartBeatResponse([int(s) for s in data], headers)


def _close_loops(loops: list[tuple[asyncio.AbstractEventLoop, AsyncClient]]) -> None:
    """Close per-thread clients and their loops (on a thread that runs no loop)."""
    for loop, client in loops:
        if loop.is_closed() or loop.is_running():
            continue  # a loop running right now (a call in progress on its thread) is left alone
        try:
            loop.run_until_complete(client.aclose())
            loop.close()
        except RuntimeError:
            pass


def _host_ip(project: str, host: str) -> str:
    """The SDK's default Source of put_logs: the local address that reaches the endpoint's host, or if that
    is 127.0.0.1, the one that reaches ``<project>.<host>`` (127.0.0.1 when that does not resolve)."""
    ip = _local_address(host)
    return _local_address(f"{project}.{host}") if ip == "127.0.0.1" else ip


def _local_address(host: str) -> str:
    s = None
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect((host, 80))
        return str(s.getsockname()[0])
    except OSError:
        return "127.0.0.1"
    finally:
        if s is not None:
            s.close()


_SUPPORTED = frozenset(n for n in vars(LogClient) if not n.startswith("_"))
