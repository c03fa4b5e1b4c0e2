"""What a captured signed request can be replayed against (issue #17 item 12, docs/security.md).

A v1 signature (HMAC-SHA1, SLS's default) does not cover the ``Host`` header, so within the time window a
request signed for one project can be replayed against another project the same key may use: SLS behaves the
same. A v4 signature covers ``host``, so the same replay is refused with ``SignatureNotMatch``. These tests pin
both facts so the documentation cannot drift from the hub.
"""

from __future__ import annotations

import http.client
import json

from sluice.client import Client
from sluice.testing import HubProcess
from sluice.wire.signing import sign_request
from tests.conftest import unique


def _get_project(hub: HubProcess, sign_for: str, send_to: str, version: str) -> tuple[int, dict]:
    """GetProject signed with Host ``sign_for.<host>`` and sent with Host ``send_to.<host>``."""
    headers = {"x-log-apiversion": "0.6.0", "x-log-bodyrawsize": "0", "Host": f"{sign_for}.{hub.host}"}
    added = sign_request("GET", "/", [], headers, b"", hub.access_key_id, hub.access_key_secret, version=version,
                         region="sluice-local")
    sent = {**headers, **added, "Host": f"{send_to}.{hub.host}"}
    conn = http.client.HTTPConnection(hub.host, hub.port, timeout=10)
    try:
        conn.request("GET", "/", headers=sent)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def test_hardening_v1_does_not_cover_host_and_v4_does(hub: HubProcess) -> None:
    a, b = unique("sig-a"), unique("sig-b")
    with Client(hub.url, hub.access_key_id, hub.access_key_secret) as c:
        c.create_project(a)
        c.create_project(b)
    status, data = _get_project(hub, a, a, "v1")
    assert (status, data.get("projectName")) == (200, a)
    status, data = _get_project(hub, a, b, "v1")  # replayed against another project: accepted, as on SLS
    assert (status, data.get("projectName")) == (200, b)
    status, data = _get_project(hub, a, a, "v4")
    assert (status, data.get("projectName")) == (200, a)
    status, data = _get_project(hub, a, b, "v4")  # v4 signs the host: refused
    assert (status, data.get("errorCode")) == (401, "SignatureNotMatch"), data
