"""The route table decides the API name and access class of every request form, in one place."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from sluice.hub.api.request import Request
from sluice.hub.auth import Access
from sluice.hub.routes import TABLE, UNKNOWN_API
from sluice.wire import errors as E


def _match(method: str, target: str, host: str = "p1.hub.local"):  # type: ignore[no-untyped-def]
    req = Request(make_mocked_request(method, target, headers={"Host": host}), b"", ("hub.local",))
    return TABLE.match(req)


@pytest.mark.parametrize("method,target,api,access", [
    ("GET", "/?offset=0&size=100", "ListProject", Access.LIST),
    ("GET", "/", "GetProject", Access.READ),
    ("POST", "/", "CreateProject", Access.ADMIN),
    ("DELETE", "/", "DeleteProject", Access.ADMIN),
    ("GET", "/logstores", "ListLogstore", Access.READ),
    ("GET", "/logstores/ls", "GetLogstore", Access.READ),
    ("POST", "/logstores/ls/shards/lb", "PutLogs", Access.WRITE),  # Python, Java
    ("POST", "/logstores/ls/shards/route?key=00", "PutLogs", Access.WRITE),  # all SDKs with a hash key
    ("POST", "/logstores/ls", "PutLogs", Access.WRITE),  # Go PutLogs / producer
    ("GET", "/logstores/ls/shards/3?type=log&cursor=MA==", "PullLogs", Access.READ),  # Python, Java
    ("GET", "/logstores/ls/shards/3?type=logs&cursor=MA==", "PullLogs", Access.READ),  # Go, Go consumer library
    ("GET", "/logstores/ls/shards/3?type=cursor&from=begin", "GetCursor", Access.READ),
    ("GET", "/logstores/ls/shards/3?type=cursor_time&cursor=MA==", "GetCursorTime", Access.READ),
    ("POST", "/logstores/ls/shards/3?action=split&key=8", "SplitShard", Access.WRITE),
    ("POST", "/logstores/ls/shards/3?action=merge", "MergeShard", Access.WRITE),
    ("DELETE", "/logstores/ls/shards/3", "DeleteShard", Access.WRITE),
    ("POST", "/logstores/ls/consumergroups", "CreateConsumerGroup", Access.CONSUME),
    ("POST", "/logstores/ls/consumergroups/g?type=heartbeat&consumer=c", "Heartbeat", Access.CONSUME),
    ("POST", "/logstores/ls/consumergroups/g?type=checkpoint&consumer=c&forceSuccess=false", "UpdateCheckPoint",
     Access.CONSUME),
    ("GET", "/logstores/ls/consumergroups/g?shard=1", "GetCheckPoint", Access.READ),
    ("DELETE", "/logstores/ls/consumergroups/g", "DeleteConsumerGroup", Access.WRITE),
])
def test_forms_map_to_one_api_and_access_class(method: str, target: str, api: str, access: Access) -> None:
    m = _match(method, target)
    assert (m.api, m.access, m.error) == (api, access, None)


def test_list_project_without_a_project_in_host() -> None:
    assert _match("GET", "/", host="hub.local").api == "ListProject"


def test_shard_path_arguments_are_typed() -> None:
    m = _match("GET", "/logstores/my_ls/shards/12?type=logs")
    assert m.args == {"logstore": "my_ls", "shard": 12}
    bad = _match("GET", "/logstores/my_ls/shards/abc?type=logs")
    assert bad.api == UNKNOWN_API and isinstance(bad.error, E.ShardNotExist)


def test_misses_are_one_sls_error_and_a_write() -> None:
    """No entry: RouteNotFound (unknown shape or method) or ParameterInvalid (selector), judged as a write."""
    for method, target, error in [("GET", "/nothing", E.RouteNotFound), ("PATCH", "/logstores/ls", E.RouteNotFound),
                                  ("GET", "/logstores/ls/shards/1?type=bogus", E.ParameterInvalid),
                                  ("POST", "/logstores/ls/consumergroups/g?type=nope", E.ParameterInvalid)]:
        m = _match(method, target)
        assert m.route is None and isinstance(m.error, error) and (m.api, m.access) == (UNKNOWN_API, Access.WRITE)


def test_every_read_api_is_declared_read_in_the_table() -> None:
    """Read-only keys are judged on the table's access class; the names are the ones docs/security.md lists."""
    assert {"GetProject", "ListLogstore", "GetLogstore", "ListShards", "PullLogs", "GetCursor", "GetCursorTime",
            "ListConsumerGroup", "GetCheckPoint"} <= TABLE.apis(Access.READ)
    assert TABLE.apis(Access.CONSUME) == {"CreateConsumerGroup", "UpdateConsumerGroup", "Heartbeat",
                                          "UpdateCheckPoint", "Heartbeats"}  # Heartbeats: sluice's batch
    assert "WaitShards" in TABLE.apis(Access.READ)
    assert "PutLogs" in TABLE.apis(Access.WRITE) and not TABLE.apis(Access.READ) & TABLE.apis(Access.WRITE)
