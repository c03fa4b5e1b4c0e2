"""A user's test: imports nothing from sluice, asks for the `sluice_hub` fixture, drives the official SDK."""

from aliyun.log import LogClient, LogItem, PutLogsRequest


def test_my_sls_program_against_a_real_hub(sluice_hub) -> None:  # type: ignore[no-untyped-def]
    """The fixture's endpoint and keys work with the unmodified official SDK."""
    sluice_hub.create_logstore("my-project", "my-logstore", shard_count=1)
    sdk = LogClient(sluice_hub.endpoint, sluice_hub.access_key_id, sluice_hub.access_key_secret)
    sdk.put_logs(PutLogsRequest("my-project", "my-logstore", "topic", "", [LogItem(contents=[("hello", "world")])]))
    cursor = sdk.get_begin_cursor("my-project", "my-logstore", 0).get_cursor()
    logs = sdk.pull_logs("my-project", "my-logstore", 0, cursor).get_flatten_logs_json()
    assert [x["hello"] for x in logs] == ["world"]
