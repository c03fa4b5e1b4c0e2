"""The three ways to point the unmodified SDK at a hub (docs/addressing.md): a bare IPv4 endpoint on port
80, HTTP_PROXY to a hub on any port (absolute-form request targets), and the project taken from Host."""

from __future__ import annotations

from typing import Iterator

import pytest
from aliyun.log import LogClient, LogItem, PutLogsRequest

from sluice.testing import HubProcess, free_port


def _round_trip(sdk: LogClient, project: str) -> None:
    sdk.create_project(project, "addressing")
    sdk.create_logstore(project, "logs", ttl=1, shard_count=1)
    sdk.put_logs(PutLogsRequest(project, "logs", "topic", "", [LogItem(contents=[("k", "v")])]))
    cursor = sdk.get_begin_cursor(project, "logs", 0).get_cursor()
    logs = sdk.pull_logs(project, "logs", 0, cursor).get_flatten_logs_json()
    assert [x["k"] for x in logs] == ["v"]
    assert project in [p["projectName"] for p in sdk.list_project().get_projects()]
    sdk.delete_project(project)


def test_bare_ip_endpoint_on_port_80(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Endpoint '127.0.0.x' (own address, port 80): the SDK connects to the IP, Host carries the project."""
    with HubProcess(tmp_path / "data") as hub:
        assert hub.port == 80 and hub.endpoint == hub.host
        _round_trip(LogClient(hub.endpoint, hub.access_key_id, hub.access_key_secret), "bare-ip")


@pytest.fixture
def proxied_hub(tmp_path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubProcess]:  # type: ignore[no-untyped-def]
    hub = HubProcess(tmp_path / "data", host="127.0.0.1", port=free_port())
    hub.start()
    monkeypatch.setenv("HTTP_PROXY", hub.url)
    monkeypatch.setenv("http_proxy", hub.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    yield hub
    hub.close()


@pytest.mark.parametrize("endpoint", ["{hub}", "sls.example.internal:9999"])
def test_http_proxy_endpoint(proxied_hub: HubProcess, endpoint: str) -> None:
    """With HTTP_PROXY=http://hub:port the SDK sends absolute-form targets; any endpoint string works."""
    ep = endpoint.format(hub=proxied_hub.endpoint)
    _round_trip(LogClient(ep, proxied_hub.access_key_id, proxied_hub.access_key_secret),
                "via-proxy" if ep.startswith("127") else "via-proxy-dns")
