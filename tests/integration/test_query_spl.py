"""SPL on PullLogs (rule-based consumption) through the official SDK against a real hub (#21)."""

from __future__ import annotations

import time

import pytest
from aliyun.log import LogException, LogItem, PutLogsRequest

from tests.conftest import unique


@pytest.fixture
def logstore(sdk, project):  # type: ignore[no-untyped-def]
    name = unique("spl")
    sdk.create_logstore(project, name, shard_count=1)
    return name


def _put(sdk, project: str, logstore: str, rows: list[dict[str, str]], topic: str = "") -> None:  # type: ignore[no-untyped-def]
    items = []
    for r in rows:
        item = LogItem(timestamp=int(time.time()))
        item.set_contents(list(r.items()))
        items.append(item)
    sdk.put_logs(PutLogsRequest(project, logstore, topic, "", items))


def test_invalid_spl_is_refused_with_sls_error(sdk, project, logstore) -> None:  # type: ignore[no-untyped-def]
    _put(sdk, project, logstore, [{"status": "500"}])
    cursor = sdk.get_cursor(project, logstore, 0, "begin").get_cursor()
    with pytest.raises(LogException) as info:
        sdk.pull_logs(project, logstore, 0, cursor, 10, query="* | where status = = '500'")
    assert info.value.get_error_code() == "ParameterInvalid"
    assert "invalid query" in info.value.get_error_message()
