"""Where the client connects for an endpoint: the endpoint itself for a hub (an IP or localhost), and
``<project>.<host>`` for a DNS endpoint such as an SLS region, as the SDK does."""

from __future__ import annotations

import pytest

from sluice.client._transport import Endpoint


@pytest.mark.parametrize("text, project, expected", [
    ("127.0.0.1:8080", "proj", ("http", "127.0.0.1", 8080, "127.0.0.1")),
    ("http://localhost", "proj", ("http", "localhost", 80, "localhost")),
    ("hub.localhost:9000", "proj", ("http", "hub.localhost", 9000, "hub.localhost")),
    ("https://cn-hangzhou.log.aliyuncs.com", "proj", ("https", "cn-hangzhou.log.aliyuncs.com", 443,
                                                      "proj.cn-hangzhou.log.aliyuncs.com")),
    ("HTTPS://CN-Hangzhou.log.aliyuncs.com/", None, ("https", "cn-hangzhou.log.aliyuncs.com", 443,
                                                    "cn-hangzhou.log.aliyuncs.com")),
])
def test_connect_host(text: str, project: str | None, expected: tuple[str, str, int, str]) -> None:
    ep = Endpoint.parse(text)
    assert (ep.scheme, ep.host, ep.port, ep.connect_host(project)) == expected
    assert ep.host_header(project) == (f"{project}.{ep.host}" if project else ep.host)
