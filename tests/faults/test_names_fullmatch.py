"""#17.9: a name that ends in a newline is refused everywhere a name is validated.

``re.match`` with a pattern ending in ``$`` also matches just before a final ``\\n``, so ``"abcd\\n"`` passed the
project, logstore and consumer-group name checks (and became a project nobody could address). Every check is a
full match now; each case here was accepted before.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from sluice.client._transport import Credentials, Transport
from sluice.testing import HubProcess
from sluice.wire.errors import SLSError
from tests.conftest import unique


def _call(hub: HubProcess, method: str, resource: str, body: Any, project: str | None = None) -> SLSError | None:
    async def go() -> SLSError | None:
        t = Transport(hub.url, Credentials(hub.access_key_id, hub.access_key_secret))
        try:
            await t.request(method, resource, project=project, body=json.dumps(body).encode(),
                            headers={"Content-Type": "application/json"}, retry=False)
            return None
        except SLSError as exc:
            return exc
        finally:
            await t.aclose()
    return asyncio.run(go())


@pytest.fixture
def logstore(hub: HubProcess, project: str) -> str:
    assert _call(hub, "POST", "/logstores", {"logstoreName": "names", "ttl": 1, "shardCount": 1}, project) is None
    return "names"


def test_project_name_with_a_trailing_newline_is_refused(hub: HubProcess) -> None:
    name = unique("nl")
    err = _call(hub, "POST", "/", {"projectName": name + "\n", "description": ""})
    assert err is not None and (err.error_code, err.http_status) == ("ProjectInfoInvalid", 400)


def test_logstore_name_with_a_trailing_newline_is_refused(hub: HubProcess, project: str) -> None:
    err = _call(hub, "POST", "/logstores", {"logstoreName": "abc\n", "ttl": 1, "shardCount": 1}, project)
    assert err is not None and (err.error_code, err.http_status) == ("LogStoreInfoInvalid", 400)


def test_group_name_with_a_trailing_newline_is_refused(hub: HubProcess, project: str, logstore: str) -> None:
    err = _call(hub, "POST", f"/logstores/{logstore}/consumergroups",
                {"consumerGroup": "grp\n", "timeout": 10, "order": False}, project)
    assert err is not None and (err.error_code, err.http_status) == ("ParameterInvalid", 400)
    assert _call(hub, "POST", f"/logstores/{logstore}/consumergroups",
                 {"consumerGroup": "grp", "timeout": 10, "order": False}, project) is None


def test_wait_session_and_index_key_with_a_trailing_newline_are_refused(hub: HubProcess, project: str,
                                                                         logstore: str) -> None:
    err = _call(hub, "POST", "/sluice/wait", {"session": "s1\n", "add": []}, project)
    assert err is not None and (err.error_code, err.http_status) == ("ParameterInvalid", 400)
    err = _call(hub, "POST", f"/logstores/{logstore}/index", {"keys": {"level\n": {"type": "text"}}}, project)
    assert err is not None and err.http_status == 400 and "level" in str(err)

