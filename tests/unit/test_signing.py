"""SLS request signing (v1, v4): the reference vectors, round trips, and agreement with the SDK's signer."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from aliyun.log.auth import AuthV1, AuthV4
from aliyun.log.credentials import StaticCredentialsProvider
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.wire import errors as E
from sluice.wire.signing import content_md5, parse_authorization, sign_request, sign_v1, verify_request

KEY_ID, SECRET = "testAccessKeyId", "testAccessKeySecret"
DATE = "Mon, 01 Jan 2024 00:00:00 GMT"
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
LZ4_VECTOR = bytes.fromhex("f0160a130880e2cfaa0612060a016b12017625050000001a017422017332080a02746b12027476")


def _v1(method: str, resource: str, params: dict[str, str], headers: dict[str, str], body: bytes = b"") -> str:
    h = {**headers, "x-log-apiversion": "0.6.0", "x-log-signaturemethod": "hmac-sha1", "Date": DATE}
    if body:
        h["Content-MD5"] = content_md5(body)
    return sign_v1(method, resource, params, h, SECRET)


@pytest.mark.parametrize("method,resource,params,headers,body,expected", [
    ("GET", "/logstores/ls1/shards/0", {"type": "cursor", "from": "begin"},
     {"Content-Type": "application/json", "x-log-bodyrawsize": "0"}, b"", "ebBClOI5cJm53m+wBcH0AVqSRY8="),
    ("POST", "/logstores/ls1/consumergroups/cg", {"type": "heartbeat", "consumer": "c1"},
     {"Content-Type": "application/json"}, b"[0]", "pQfOQR2UPoca8pjDlSookYlkXy0="),
    ("POST", "/logstores/ls1/consumergroups/cg", {"type": "checkpoint", "consumer": "c1", "forceSuccess": "True"},
     {"Content-Type": "application/json"}, b'{"shard": 0, "checkpoint": "MTAwMQ=="}', "7LS6mtHCer+ATVaUzhRNsvDmF6k="),
    ("GET", "/logstores/ls1/shards/0", {"type": "log", "cursor": "MTAwMA==", "count": "1000"},
     {"x-log-bodyrawsize": "0"}, b"", "IKPSjs/bZAhz+KjKdixt4Ha06x4="),
    ("GET", "/logstores", {"offset": "0", "size": "100"},
     {"x-log-bodyrawsize": "0", "x-acs-security-token": "sts-token-xyz"}, b"", "h7FwOVxboq/+leqP/NTg50hqpws="),
    ("GET", "/", {"offset": "0", "size": "100", "resourceGroupId": ""}, {"x-log-bodyrawsize": "0"}, b"",
     "XUXpKcb1MvY3CTJGVcBUrz9ug7I="),
    ("POST", "/logstores/ls1/shards/lb", {}, {"Content-Type": "application/x-protobuf", "x-log-bodyrawsize": "37",
                                               "x-log-compresstype": "lz4"}, LZ4_VECTOR, "j5mqgjThMI7HJgUsIRGAAfqMzvI="),
])
def test_v1_reference_vectors(method, resource, params, headers, body, expected) -> None:  # type: ignore[no-untyped-def]
    """The v1 vectors of sls-api.md 3.3 (V1-a..g), reproduced exactly."""
    assert _v1(method, resource, params, headers, body) == expected


def test_v4_reference_vectors() -> None:
    """The v4 vectors of sls-api.md 3.3 (V4-a, V4-b)."""
    add = sign_request("POST", "/logstores/ls1/consumergroups/cg", {"type": "heartbeat", "consumer": "c1"},
                       {"Content-Type": "application/json", "x-log-apiversion": "0.6.0",
                        "Host": "proj.cn-hangzhou.log.aliyuncs.com"}, b"[0]", KEY_ID, SECRET, version="v4",
                       region="cn-hangzhou", now=T0)
    assert add["Authorization"] == ("SLS4-HMAC-SHA256 Credential=testAccessKeyId/20240101/cn-hangzhou/sls/"
                                    "aliyun_v4_request,Signature=d46f7ae1a340f32ec31dae0fcebe8df0435bb3b656b8e3855b"
                                    "5819a1def33b9e")
    add = sign_request("GET", "/logstores/ls1/shards/0", {"type": "cursor_time", "cursor": "MTAwMA=="},
                       {"x-log-apiversion": "0.6.0", "Host": "proj.127.0.0.1", "x-log-bodyrawsize": "0"}, b"",
                       KEY_ID, SECRET, version="v4", region="cn-hangzhou", now=T0)
    assert add["Authorization"].endswith("Signature=cc345aa8ab3761bbadee7b17e3613fd82a5b64eadbe3f1dd519271f4da51dfaa")


_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
_params = st.dictionaries(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8), _text, max_size=4)


@settings(max_examples=60, deadline=None)
@given(params=_params, body=st.binary(max_size=64), token=st.one_of(st.none(), st.just("sts-token")))
def test_sdk_v1_signatures_verify_and_match(params: dict[str, str], body: bytes, token: str | None) -> None:
    """Whatever the SDK's AuthV1 signs, the hub verifies, and sluice's signer produces the same signature."""
    headers = {"x-log-apiversion": "0.6.0", "Content-Type": "application/json", "x-log-bodyrawsize": str(len(body))}
    AuthV1(StaticCredentialsProvider(KEY_ID, SECRET, token or "")).sign_request(
        "POST", "/logstores/x/shards/lb", params, headers, body)
    assert verify_request("POST", "/logstores/x/shards/lb", list(params.items()), headers, body,
                          {KEY_ID: SECRET}.get, max_skew=None) == KEY_ID
    sig = parse_authorization(headers["Authorization"]).signature
    assert sign_v1("POST", "/logstores/x/shards/lb", params, headers, SECRET) == sig


@settings(max_examples=60, deadline=None)
@given(params=_params, body=st.binary(max_size=64))
def test_sdk_v4_signatures_verify_and_match(params: dict[str, str], body: bytes) -> None:
    """Whatever the SDK's AuthV4 signs, the hub verifies, and sluice's signer produces the same header."""
    base = {"x-log-apiversion": "0.6.0", "Content-Type": "application/json", "Host": "p.127.0.0.1"}
    sdk_headers = dict(base)
    stamp = "20240101T000000Z"
    sdk_headers["Authorization"] = AuthV4(StaticCredentialsProvider(KEY_ID, SECRET, ""), "cn-hangzhou")._do_sign_request(
        "PUT", "/logstores/x", dict(params), sdk_headers, body, stamp)
    assert verify_request("PUT", "/logstores/x", list(params.items()), sdk_headers, body, {KEY_ID: SECRET}.get,
                          max_skew=None) == KEY_ID
    ours = sign_request("PUT", "/logstores/x", params, base, body, KEY_ID, SECRET, version="v4", region="cn-hangzhou",
                        now=T0)
    assert ours["Authorization"] == sdk_headers["Authorization"]


def _signed(version: str = "v1") -> tuple[dict[str, str], list[tuple[str, str]], bytes]:
    params = [("type", "log"), ("cursor", "MA=="), ("q", "a b=c&d")]
    headers = {"x-log-apiversion": "0.6.0", "Content-Type": "application/json", "Host": "p.127.0.0.1"}
    body = b'{"x": 1}'
    headers.update(sign_request("POST", "/logstores/a", params, headers, body, KEY_ID, SECRET, version=version,
                                region="r1", security_token="tok"))
    return headers, params, body


@pytest.mark.parametrize("version", ["v1", "v4"])
def test_round_trip_and_tampering(version: str) -> None:
    """A signed request verifies; changing method, path, a parameter, the body or a signed header does not."""
    headers, params, body = _signed(version)
    lookup = {KEY_ID: SECRET}.get
    assert verify_request("POST", "/logstores/a", params, headers, body, lookup) == KEY_ID
    tampered = [
        ("PUT", "/logstores/a", params, headers, body),
        ("POST", "/logstores/b", params, headers, body),
        ("POST", "/logstores/a", params[:-1] + [("q", "other")], headers, body),
        ("POST", "/logstores/a", params, headers, b'{"x": 2}'),
        ("POST", "/logstores/a", params, {**headers, "x-log-bodyrawsize": "9"}, body),
        ("POST", "/logstores/a", params, {**headers, "x-acs-security-token": "other"}, body),
    ]
    for args in tampered:
        with pytest.raises(E.SignatureNotMatch):
            verify_request(*args, lookup)  # type: ignore[arg-type]


def test_auth_failures_are_sls_errors() -> None:
    """Unknown key, missing header, skewed clock and garbage each raise their SLS error."""
    headers, params, body = _signed()
    with pytest.raises(E.InvalidAccessKeyId):
        verify_request("POST", "/logstores/a", params, headers, body, {}.get)
    with pytest.raises(E.Unauthorized):
        verify_request("POST", "/logstores/a", params, {}, body, {KEY_ID: SECRET}.get)
    with pytest.raises(E.RequestTimeTooSkewed):
        verify_request("POST", "/logstores/a", params, headers, body, {KEY_ID: SECRET}.get,
                       now=datetime(2030, 1, 1, tzinfo=timezone.utc))


@settings(max_examples=200, deadline=None)
@given(value=st.text(max_size=200), date=st.text(max_size=40))
def test_garbage_authorization_only_raises_sls_errors(value: str, date: str) -> None:
    """No Authorization or Date value, however malformed, raises anything but an SLSError."""
    try:
        verify_request("GET", "/", [], {"Authorization": value, "Date": date, "x-log-date": date}, b"",
                       {KEY_ID: SECRET}.get)
    except E.SLSError:
        return
