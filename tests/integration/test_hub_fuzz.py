"""Random, signed requests never get a 500, a non-SLS error body or a hang, and the hub keeps serving."""

from __future__ import annotations

import http.client
import json
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice.testing import HubProcess
from sluice.wire.signing import sign_request

_segment = st.sampled_from(["logstores", "shards", "consumergroups", "lb", "route", "0", "1", "99", "-1",
                            "fuzz", "logs", "x" * 70, "%41", ""])
_params = st.lists(st.tuples(st.sampled_from(["type", "from", "cursor", "count", "end_cursor", "action", "key",
                                              "consumer", "forceSuccess", "shard", "offset", "size"]),
                             st.one_of(st.sampled_from(["log", "cursor", "cursor_time", "heartbeat", "checkpoint",
                                                        "split", "merge", "begin", "end", "MA==", "-1", "",
                                                        "9" * 30, "True"]),
                                       st.text(max_size=20))), max_size=5)
_body = st.one_of(st.binary(max_size=300), st.just(b"[0, 1]"), st.just(b'{"shard": 0, "checkpoint": "MA=="}'),
                  st.just(b'{"logstoreName": "fuzzls", "ttl": 1, "shardCount": 2}'),
                  st.just(b'{"consumerGroup": "g", "timeout": 5}'), st.just(b"[" * 5000))
_headers = st.fixed_dictionaries({}, optional={
    "x-log-compresstype": st.sampled_from(["lz4", "zstd", "deflate", "gzip", "nope", ""]),
    "x-log-bodyrawsize": st.sampled_from(["0", "10", "-5", "99999999999", "abc"]),
    "Content-Type": st.sampled_from(["application/json", "application/x-protobuf", "text/plain"]),
    "x-log-hashkey": st.sampled_from(["00", "zz", "f" * 40]),
    "x-sluice-wait": st.sampled_from(["0.01", "x", "-1"]),
})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]), parts=st.lists(_segment, max_size=5),
       params=_params, body=_body, headers=_headers)
def test_random_requests_get_sls_errors(hub: HubProcess, method: str, parts: list[str], params: list[tuple[str, str]],
                                        body: bytes, headers: dict[str, str]) -> None:
    """Whatever the route, parameters, headers or body: 200 or an SLS error JSON with a 4xx status."""
    project = "fuzzproj"
    conn = http.client.HTTPConnection(hub.host, hub.port, timeout=30)
    try:
        conn.request("POST", "/", body=json.dumps({"projectName": project}).encode(),
                     headers={"Host": hub.host, **_signed("POST", "/", [], b'{"projectName": "fuzzproj"}', hub,
                                                          {"Content-Type": "application/json"})})
        conn.getresponse().read()
        resource = "/" + "/".join(parts)
        h = {"Host": f"{project}.{hub.host}", "x-log-apiversion": "0.6.0", **headers}
        h.update(_signed(method, resource, params, body, hub, h))
        query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params)
        conn.request(method, resource + (f"?{query}" if query else ""), body=body or None, headers=h)
        resp = conn.getresponse()
        data = resp.read()
        assert resp.status < 500, (resp.status, data[:300])
        assert resp.getheader("x-log-requestid")
        if resp.status != 200:
            err = json.loads(data)
            assert set(err) == {"errorCode", "errorMessage"} and err["errorCode"]
    finally:
        conn.close()


def _signed(method: str, resource: str, params: list[tuple[str, str]], body: bytes, hub: HubProcess,
            headers: dict[str, str]) -> dict[str, str]:
    return sign_request(method, resource, params, headers, body, hub.access_key_id, hub.access_key_secret)


def test_hub_alive_after_fuzz(hub: HubProcess) -> None:
    """The hub still answers after the sweep above."""
    conn = http.client.HTTPConnection(hub.host, hub.port, timeout=10)
    conn.request("GET", "/", headers={"Host": hub.host})
    assert conn.getresponse().status == 401
    conn.close()
