"""SLS request signing (v1, v4): the reference vectors of sls-api.md 3.3, round trips, agreement with the
official SDK's signer, and the hub-side failures (tampering, unknown keys, skew, garbage)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator
from unittest import mock
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import lz4.block
import pytest
import requests
from aliyun.log import auth as sdk_auth
from aliyun.log.logclient import LogClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice.wire.errors import (
    InvalidAccessKeyId,
    RequestTimeTooSkewed,
    SignatureNotMatch,
    SLSError,
    Unauthorized,
)
from sluice.wire.signing import (
    Credential,
    canonical_request_v4,
    content_md5,
    parse_authorization,
    sign_request,
    sign_v1,
    sign_v4,
    string_to_sign_v1,
    verify_request,
)

KEY_ID, SECRET = "testAccessKeyId", "testAccessKeySecret"
REGION = "cn-hangzhou"
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
DATE = "Mon, 01 Jan 2024 00:00:00 GMT"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
# sls-api.md section 4: a 37-byte LogGroup and its 39-byte raw lz4 block (the PutLogs body of V1-g).
LOGGROUP_37 = bytes.fromhex("0a130880e2cfaa0612060a016b12017625050000001a017422017332080a02746b12027476")
LZ4_BODY = bytes.fromhex("f0160a130880e2cfaa0612060a016b12017625050000001a017422017332080a02746b12027476")
API = {"x-log-apiversion": "0.6.0"}


def lookup(key_id: str) -> str | None:
    return {KEY_ID: SECRET}.get(key_id)


def as_received(params: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The query as the hub sees it: percent-encoded on the wire, then form-decoded."""
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params)
    return parse_qsl(query, keep_blank_values=True)


# --- reference vectors (sls-api.md 3.3) ---

V1_VECTORS = [
    pytest.param(
        "GET", "/logstores/ls1/shards/0", {"type": "cursor", "from": "begin"},
        {"Content-Type": "application/json", "x-log-bodyrawsize": "0"}, b"", None,
        f"GET\n\napplication/json\n{DATE}\nx-log-apiversion:0.6.0\nx-log-bodyrawsize:0\n"
        "x-log-signaturemethod:hmac-sha1\n/logstores/ls1/shards/0?from=begin&type=cursor",
        "ebBClOI5cJm53m+wBcH0AVqSRY8=", id="V1-a",
    ),
    pytest.param(
        "POST", "/logstores/ls1/consumergroups/cg", {"type": "heartbeat", "consumer": "c1"},
        {"Content-Type": "application/json"}, b"[0]", None,
        f"POST\n8D5162CA104FA7E79FE80FD92BB657FB\napplication/json\n{DATE}\nx-log-apiversion:0.6.0\n"
        "x-log-signaturemethod:hmac-sha1\n/logstores/ls1/consumergroups/cg?consumer=c1&type=heartbeat",
        "pQfOQR2UPoca8pjDlSookYlkXy0=", id="V1-b",
    ),
    pytest.param(
        "POST", "/logstores/ls1/consumergroups/cg", {"type": "checkpoint", "consumer": "c1", "forceSuccess": "True"},
        {"Content-Type": "application/json"}, b'{"shard": 0, "checkpoint": "MTAwMQ=="}', None,
        f"POST\nB322AC79654280295407B66344ACFF5D\napplication/json\n{DATE}\nx-log-apiversion:0.6.0\n"
        "x-log-signaturemethod:hmac-sha1\n"
        "/logstores/ls1/consumergroups/cg?consumer=c1&forceSuccess=True&type=checkpoint",
        "7LS6mtHCer+ATVaUzhRNsvDmF6k=", id="V1-c",
    ),
    pytest.param(
        "GET", "/logstores/ls1/shards/0", {"type": "log", "cursor": "MTAwMA==", "count": "1000"},
        {"x-log-bodyrawsize": "0"}, b"", None,
        f"GET\n\n\n{DATE}\nx-log-apiversion:0.6.0\nx-log-bodyrawsize:0\nx-log-signaturemethod:hmac-sha1\n"
        "/logstores/ls1/shards/0?count=1000&cursor=MTAwMA==&type=log",
        "IKPSjs/bZAhz+KjKdixt4Ha06x4=", id="V1-d",
    ),
    pytest.param(
        "GET", "/logstores", {"offset": "0", "size": "100"}, {"x-log-bodyrawsize": "0"}, b"", "sts-token-xyz",
        f"GET\n\n\n{DATE}\nx-acs-security-token:sts-token-xyz\nx-log-apiversion:0.6.0\nx-log-bodyrawsize:0\n"
        "x-log-signaturemethod:hmac-sha1\n/logstores?offset=0&size=100",
        "h7FwOVxboq/+leqP/NTg50hqpws=", id="V1-e",
    ),
    pytest.param(
        "GET", "/", {"offset": "0", "size": "100", "resourceGroupId": ""}, {"x-log-bodyrawsize": "0"}, b"", None,
        f"GET\n\n\n{DATE}\nx-log-apiversion:0.6.0\nx-log-bodyrawsize:0\nx-log-signaturemethod:hmac-sha1\n"
        "/?offset=0&resourceGroupId=&size=100",
        "XUXpKcb1MvY3CTJGVcBUrz9ug7I=", id="V1-f",
    ),
    pytest.param(
        "POST", "/logstores/ls1/shards/lb", {},
        {"Content-Type": "application/x-protobuf", "x-log-bodyrawsize": "37", "x-log-compresstype": "lz4"},
        LZ4_BODY, None,
        f"POST\n362CFFB174A10657057D625D0E18D9B7\napplication/x-protobuf\n{DATE}\nx-log-apiversion:0.6.0\n"
        "x-log-bodyrawsize:37\nx-log-compresstype:lz4\nx-log-signaturemethod:hmac-sha1\n/logstores/ls1/shards/lb",
        "j5mqgjThMI7HJgUsIRGAAfqMzvI=", id="V1-g",
    ),
]


@pytest.mark.parametrize("method,resource,params,headers,body,token,to_sign,signature", V1_VECTORS)
def test_v1_reference_vectors(
    method: str, resource: str, params: dict[str, str], headers: dict[str, str], body: bytes,
    token: str | None, to_sign: str, signature: str,
) -> None:
    """sign_request reproduces each v1 vector exactly: string to sign, Content-MD5, Date and Authorization."""
    headers = {**API, **headers}
    added = sign_request(method, resource, params, headers, body, KEY_ID, SECRET, security_token=token, now=T0)
    sent = {**headers, **added}
    assert string_to_sign_v1(method, resource, params, sent) == to_sign
    assert added["Authorization"] == f"LOG {KEY_ID}:{signature}"
    assert sign_v1(method, resource, params, sent, SECRET) == signature
    assert added["Date"] == added["x-log-date"] == DATE
    assert added.get("Content-MD5") == (content_md5(body) if body else None)
    assert verify_request(method, resource, list(params.items()), sent, body, lookup, now=T0) == KEY_ID


def test_v1_g_body_is_the_section_4_lz4_vector() -> None:
    """The V1-g body is the raw lz4 block of the 37-byte LogGroup of section 4, with the documented MD5."""
    assert len(LZ4_BODY) == 39
    assert lz4.block.decompress(LZ4_BODY, uncompressed_size=37) == LOGGROUP_37
    assert content_md5(LZ4_BODY) == "362CFFB174A10657057D625D0E18D9B7"


def test_content_md5_is_uppercase_hex() -> None:
    """Content-MD5 is the uppercase hex MD5 of the bytes sent (V1-b's body is ``[0]``)."""
    assert content_md5(b"[0]") == "8D5162CA104FA7E79FE80FD92BB657FB"
    assert content_md5(b"") == hashlib.md5(b"").hexdigest().upper()


V4A_AUTHORIZATION = (
    "SLS4-HMAC-SHA256 Credential=testAccessKeyId/20240101/cn-hangzhou/sls/aliyun_v4_request,"
    "Signature=d46f7ae1a340f32ec31dae0fcebe8df0435bb3b656b8e3855b5819a1def33b9e"
)


def test_v4_a_reference_vector() -> None:
    """V4-a: signed headers, payload hash, canonical-request hash and Authorization are the SDK's."""
    method, resource, params = "POST", "/logstores/ls1/consumergroups/cg", {"type": "heartbeat", "consumer": "c1"}
    headers = {"Content-Type": "application/json", **API, "Host": "proj.cn-hangzhou.log.aliyuncs.com"}
    added = sign_request(method, resource, params, headers, b"[0]", KEY_ID, SECRET, version="v4", region=REGION,
                         now=T0)
    payload = "d0bca111f8628137adc4c16f123496dcdd1d590d06cb5d9acd68b39fe656fb97"
    assert added == {"x-log-content-sha256": payload, "x-log-date": "20240101T000000Z",
                     "Authorization": V4A_AUTHORIZATION}
    canonical = canonical_request_v4(method, resource, params, {**headers, **added}, payload)
    lines = canonical.split("\n")
    assert lines[-2:] == ["content-type;host;x-log-apiversion;x-log-content-sha256;x-log-date", payload]
    assert lines[2] == "consumer=c1&type=heartbeat"
    assert hashlib.sha256(canonical.encode()).hexdigest() == (
        "f12b0f994ee48cedddb7758be1f6097f6c6c2a64f55ae851ea4d0433eac4c834"
    )
    # sign_v4 alone adds x-log-date and x-log-content-sha256 to the signed headers as sign_request sets them.
    assert V4A_AUTHORIZATION.endswith(
        "Signature=" + sign_v4(method, resource, params, headers, b"[0]", SECRET, REGION, "20240101T000000Z")
    )


def test_v4_b_reference_vector() -> None:
    """V4-b: an RFC 3986-encoded query, no Content-Type, the empty-body hash, and the SDK's signature."""
    method, resource, params = "GET", "/logstores/ls1/shards/0", {"type": "cursor_time", "cursor": "MTAwMA=="}
    headers = {**API, "Host": "proj.127.0.0.1", "x-log-bodyrawsize": "0"}
    added = sign_request(method, resource, params, headers, b"", KEY_ID, SECRET, version="v4", region=REGION, now=T0)
    assert added["x-log-content-sha256"] == EMPTY_SHA256
    assert added["Authorization"] == (
        "SLS4-HMAC-SHA256 Credential=testAccessKeyId/20240101/cn-hangzhou/sls/aliyun_v4_request,"
        "Signature=cc345aa8ab3761bbadee7b17e3613fd82a5b64eadbe3f1dd519271f4da51dfaa"
    )
    lines = canonical_request_v4(method, resource, params, {**headers, **added}, EMPTY_SHA256).split("\n")
    assert lines[2] == "cursor=MTAwMA%3D%3D&type=cursor_time"
    assert lines[-2] == "host;x-log-apiversion;x-log-bodyrawsize;x-log-content-sha256;x-log-date"


def test_v4_canonical_query_encoding() -> None:
    """v4 encodes values per RFC 3986 (UTF-8, space as %20, ``~`` kept), leaves keys alone, and writes an
    empty value as the bare key."""
    lines = canonical_request_v4("GET", "/", [("b", "a b/c~"), ("a", ""), ("c", "é+=")], {}, EMPTY_SHA256)
    assert lines.split("\n")[2] == "a&b=a%20b%2Fc~&c=%C3%A9%2B%3D"


# --- sign_request -> verify_request round trips ---

AWKWARD_PARAMS = [
    ("type", "log"), ("q", "a b=c&d"), ("name", "日本語 ü"), ("empty", ""), ("plus", "1+1"), ("pct", "100%"),
]


@pytest.mark.parametrize("version", ["v1", "v4"])
@pytest.mark.parametrize("token", [None, "sts-token+/="])
@pytest.mark.parametrize("body", [b"", b'{"x": 1}'])
def test_round_trip(version: str, token: str | None, body: bytes) -> None:
    """What sign_request signs, verify_request accepts after the query crosses the wire (encoded, then
    form-decoded), with or without an STS token, with or without a body."""
    headers = {**API, "Content-Type": "application/json", "Host": "p.example.com"}
    added = sign_request("POST", "/logstores/a", AWKWARD_PARAMS, headers, body, KEY_ID, SECRET, version=version,
                         region=REGION, security_token=token, now=T0)
    assert ("x-acs-security-token" in added) == (token is not None)
    received = as_received(AWKWARD_PARAMS)
    assert verify_request("POST", "/logstores/a", received, {**headers, **added}, body, lookup, now=T0) == KEY_ID


def test_v1_empty_secret_sends_no_authorization() -> None:
    """As the SDK does, v1 with an empty secret adds Date and the method but no Authorization or x-log-date."""
    added = sign_request("GET", "/", {}, API, b"", KEY_ID, "", now=T0)
    assert added == {"x-log-signaturemethod": "hmac-sha1", "Date": DATE}


# --- agreement with the official SDK (LogClient with a pinned clock) ---


class _PinnedClock(datetime):
    """Stands in for ``datetime`` inside aliyun.log.auth, so the SDK signs at T0."""

    @classmethod
    def utcnow(cls) -> _PinnedClock:
        return cls(2024, 1, 1)


def sdk_send(
    version: str, token: str | None, method: str, resource: str, params: dict[str, str],
    headers: dict[str, str], body: bytes,
) -> tuple[dict[str, str], dict[str, str]]:
    """Run ``LogClient._send`` as the SDK's API methods do; return the headers just before the SDK signed
    and as it would send them. ``_sendRequest`` is replaced, so nothing leaves the process."""
    client: Any = LogClient("cn-hangzhou.log.aliyuncs.com", KEY_ID, SECRET, securityToken=token, source="test",
                            auth_version=version, region=REGION)
    seen: dict[str, dict[str, str]] = {}
    sign = client._auth.sign_request

    def spy_sign(method: str, resource: str, params: Any, headers: dict[str, str], body: bytes, **kw: Any) -> None:
        seen["before"] = dict(headers)
        sign(method, resource, params, headers, body, **kw)

    def fake_send(method: str, url: str, params: Any, body: bytes, headers: dict[str, str],
                  respons_body_type: str = "json") -> tuple[dict[str, str], dict[str, str]]:
        seen["sent"] = dict(headers)
        return {}, {}

    client._auth.sign_request = spy_sign
    client._sendRequest = fake_send
    try:
        with mock.patch.object(sdk_auth, "datetime", _PinnedClock):
            client._send(method, "proj", body, resource, dict(params), dict(headers))
    finally:
        client._session.close()
    return seen["before"], seen["sent"]


def on_the_wire(resource: str, params: dict[str, str]) -> tuple[str, list[tuple[str, str]]]:
    """Path and query as the hub decodes them from the URL ``requests`` builds for the SDK."""
    url = requests.Request("GET", "http://proj.example.com" + resource, params=params).prepare().url
    assert url is not None
    parts = urlsplit(url)
    return unquote(parts.path), parse_qsl(parts.query, keep_blank_values=True)


_segment = st.text(alphabet="abcXYZ019-_.~ éü日", min_size=1, max_size=8).filter(lambda s: s not in (".", ".."))
_resources = st.lists(_segment, max_size=4).map(lambda parts: "/" + "/".join(parts))
_param_values = st.text(st.characters(codec="utf-8"), max_size=12)  # no lone surrogates: unsendable
_params = st.dictionaries(st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC_-0123", min_size=1, max_size=8),
                          _param_values, max_size=5)
_headers = st.fixed_dictionaries({}, optional={
    "Content-Type": st.sampled_from(["application/json", "application/x-protobuf"]),
    "x-log-compresstype": st.sampled_from(["lz4", "zstd"]),
    "x-log-bodyrawsize": st.integers(0, 10**6).map(str),
    "x-log-meta-note": st.sampled_from(["unsigned", "x"]),
    "x-acs-padded": st.sampled_from(["plain", " padded  "]),  # v4 trims signed values, v1 does not
})


@settings(max_examples=150, deadline=None)
@given(
    version=st.sampled_from(["v1", "v4"]),
    token=st.sampled_from([None, "sts-token-xyz", "CAIS+tok/en=="]),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    resource=_resources,
    params=_params,
    headers=_headers,
    body=st.one_of(st.just(b""), st.binary(max_size=200)),
)
def test_sdk_signatures_verify_and_ours_equal_them(
    version: str, token: str | None, method: str, resource: str, params: dict[str, str],
    headers: dict[str, str], body: bytes,
) -> None:
    """For any request the SDK's LogClient signs (v1 or v4, STS or not), sign_request adds exactly the
    headers the SDK adds, in its order, and verify_request accepts what the SDK sends."""
    before, sent = sdk_send(version, token, method, resource, params, headers, body)
    ours = sign_request(method, resource, params, before, body, KEY_ID, SECRET, version=version, region=REGION,
                        security_token=token, now=T0)
    assert list({**before, **ours}.items()) == list(sent.items())
    path, pairs = on_the_wire(resource, params)
    assert path == resource
    assert verify_request(method, path, pairs, sent, body, lookup, now=T0) == KEY_ID


# --- what the hub rejects ---


def signed(version: str, *, token: str | None = None) -> tuple[dict[str, str], list[tuple[str, str]], bytes]:
    """A signed POST /logstores/a, as sent: headers, query pairs and body."""
    params = [("type", "log"), ("q", "a b=c&d"), ("empty", "")]
    headers = {**API, "Content-Type": "application/json", "Host": "p.example.com", "x-log-bodyrawsize": "8"}
    body = b'{"x": 1}'
    headers.update(sign_request("POST", "/logstores/a", params, headers, body, KEY_ID, SECRET, version=version,
                                region=REGION, security_token=token, now=T0))
    return headers, params, body


Tamper = Callable[[str, str, list[tuple[str, str]], dict[str, str], bytes],
                  tuple[str, str, list[tuple[str, str]], dict[str, str], bytes]]

TAMPERING: dict[str, Tamper] = {
    "method": lambda m, r, p, h, b: ("PUT", r, p, h, b),
    "path": lambda m, r, p, h, b: (m, "/logstores/b", p, h, b),
    "param value": lambda m, r, p, h, b: (m, r, [*p[:-1], ("empty", "x")], h, b),
    "param added": lambda m, r, p, h, b: (m, r, [*p, ("forceSuccess", "True")], h, b),
    "param removed": lambda m, r, p, h, b: (m, r, p[1:], h, b),
    "body": lambda m, r, p, h, b: (m, r, p, h, b'{"x": 2}'),
    "body and its digest": lambda m, r, p, h, b: (m, r, p, {**h, "Content-MD5": content_md5(b"{}"),
                                                            "x-log-content-sha256": hashlib.sha256(b"{}").hexdigest()},
                                                  b"{}"),
    "x-log header": lambda m, r, p, h, b: (m, r, p, {**h, "x-log-bodyrawsize": "9"}, b),
    "x-log header added": lambda m, r, p, h, b: (m, r, p, {**h, "x-log-compresstype": "lz4"}, b),
    "content type": lambda m, r, p, h, b: (m, r, p, {**h, "Content-Type": "text/plain"}, b),
    "security token": lambda m, r, p, h, b: (m, r, p, {**h, "x-acs-security-token": "other"}, b),
    "signature": lambda m, r, p, h, b: (m, r, p, {**h, "Authorization": h["Authorization"][:-3] + "abc"}, b),
}


@pytest.mark.parametrize("version", ["v1", "v4"])
@pytest.mark.parametrize("change", list(TAMPERING))
def test_tampering_is_signature_not_match(version: str, change: str) -> None:
    """Changing the method, path, a parameter, the body or a signed header of a signed request fails with
    SignatureNotMatch (401)."""
    headers, params, body = signed(version, token="tok")
    assert verify_request("POST", "/logstores/a", params, headers, body, lookup, now=T0) == KEY_ID
    method, resource, params, headers, body = TAMPERING[change]("POST", "/logstores/a", params, headers, body)
    with pytest.raises(SignatureNotMatch) as caught:
        verify_request(method, resource, params, headers, body, lookup, now=T0)
    assert caught.value.http_status == 401


@pytest.mark.parametrize(
    "name,value", [("Date", "Mon, 01 Jan 2024 00:00:01 GMT"), ("x-log-date", "20240101T000001Z")]
)
def test_changing_the_signed_time_is_signature_not_match(name: str, value: str) -> None:
    """The request time is signed: Date in v1, x-log-date in v4."""
    version = "v1" if name == "Date" else "v4"
    headers, params, body = signed(version)
    with pytest.raises(SignatureNotMatch):
        verify_request("POST", "/logstores/a", params, {**headers, name: value}, body, lookup, now=T0)


@pytest.mark.parametrize("version", ["v1", "v4"])
def test_unsigned_headers_may_change(version: str) -> None:
    """User-Agent, x-log-meta-*, the name case of headers, and (v1 only) Host are not signed."""
    headers, params, body = signed(version)
    headers = {k.upper(): v for k, v in headers.items()}
    headers.update({"User-Agent": "anything", "x-log-meta-note": "added later"})
    if version == "v1":
        headers["HOST"] = "elsewhere"
    assert verify_request("POST", "/logstores/a", params, headers, body, lookup, now=T0) == KEY_ID


def test_mismatch_message_shows_the_servers_string_to_sign() -> None:
    """Like SLS, a v1 mismatch tells the client the string to sign the server computed."""
    headers, params, body = signed("v1")
    with pytest.raises(SignatureNotMatch) as caught:
        verify_request("PUT", "/logstores/a", params, headers, body, lookup, now=T0)
    assert repr(string_to_sign_v1("PUT", "/logstores/a", params, headers)) in str(caught.value)


def test_v4_mismatch_message_shows_the_canonical_request() -> None:
    """A v4 mismatch shows the canonical request the server computed."""
    headers, params, body = signed("v4")
    with pytest.raises(SignatureNotMatch) as caught:
        verify_request("PUT", "/logstores/a", params, headers, body, lookup, now=T0)
    assert "canonical request is 'PUT\\n/logstores/a\\n" in str(caught.value)


def test_v1_body_without_content_md5_is_rejected() -> None:
    """v1 binds the body only through Content-MD5, so a body without one is not accepted."""
    headers, params, body = signed("v1")
    del headers["Content-MD5"]
    headers["Authorization"] = "LOG %s:%s" % (KEY_ID, sign_v1("POST", "/logstores/a", params, headers, SECRET))
    with pytest.raises(SignatureNotMatch, match="Content-MD5"):
        verify_request("POST", "/logstores/a", params, headers, body, lookup, now=T0)


def test_v1_lowercase_content_md5_from_other_clients() -> None:
    """A lowercase-hex Content-MD5 is accepted when it is the body's MD5 and the signature covers it as sent."""
    body = b"[0]"
    headers = {**API, "Content-MD5": content_md5(body).lower(), "Date": DATE, "x-log-signaturemethod": "hmac-sha1"}
    headers["Authorization"] = f"LOG {KEY_ID}:{sign_v1('POST', '/x', [], headers, SECRET)}"
    assert verify_request("POST", "/x", [], headers, body, lookup, now=T0) == KEY_ID


def test_v1_clients_that_sign_x_log_date() -> None:
    """A v1 client that signs x-log-date (the SDK adds it after signing) is accepted too."""
    headers = {**API, "Date": DATE, "x-log-date": DATE, "x-log-signaturemethod": "hmac-sha1"}
    signature = sign_v1("GET", "/logstores", [], headers, SECRET, sign_x_log_date=True)
    assert signature != sign_v1("GET", "/logstores", [], headers, SECRET)
    headers["Authorization"] = f"LOG {KEY_ID}:{signature}"
    assert verify_request("GET", "/logstores", [], headers, b"", lookup, now=T0) == KEY_ID


def test_v1_without_date_uses_x_log_date() -> None:
    """When a proxy drops Date, x-log-date (the SDK's copy) stands in for it, in the signature and the age."""
    headers, params, body = signed("v1")
    del headers["Date"]
    assert verify_request("POST", "/logstores/a", params, headers, body, lookup, now=T0) == KEY_ID
    with pytest.raises(RequestTimeTooSkewed):
        verify_request("POST", "/logstores/a", params, headers, body, lookup, now=T0 + timedelta(hours=1))


@pytest.mark.parametrize("version", ["v1", "v4"])
def test_unknown_access_key_id(version: str) -> None:
    """A key id the hub does not know is InvalidAccessKeyId (401); a wrong secret is SignatureNotMatch."""
    headers = {**API, "Host": "p.example.com"}
    other = sign_request("GET", "/", {}, headers, b"", "otherKeyId", SECRET, version=version, region=REGION, now=T0)
    with pytest.raises(InvalidAccessKeyId) as caught:
        verify_request("GET", "/", [], {**headers, **other}, b"", lookup, now=T0)
    assert caught.value.http_status == 401 and "otherKeyId" in str(caught.value)
    wrong = sign_request("GET", "/", {}, headers, b"", KEY_ID, "wrong", version=version, region=REGION, now=T0)
    with pytest.raises(SignatureNotMatch):
        verify_request("GET", "/", [], {**headers, **wrong}, b"", lookup, now=T0)


@pytest.mark.parametrize("authorization", [None, "", "   "])
def test_missing_authorization_is_unauthorized(authorization: str | None) -> None:
    """A request without an Authorization value is Unauthorized (401)."""
    headers, params, body = signed("v1")
    del headers["Authorization"]
    if authorization is not None:
        headers["authorization"] = authorization
    with pytest.raises(Unauthorized) as caught:
        verify_request("POST", "/logstores/a", params, headers, body, lookup, now=T0)
    assert caught.value.http_status == 401


@pytest.mark.parametrize("version", ["v1", "v4"])
@pytest.mark.parametrize("offset,accepted", [(-901, False), (-899, True), (899, True), (901, False)])
def test_clock_skew(version: str, offset: int, accepted: bool) -> None:
    """A request more than max_skew (15 minutes) from the server's clock, either way, is RequestTimeTooSkewed."""
    headers, params, body = signed(version)
    now = T0 + timedelta(seconds=offset)
    if accepted:
        assert verify_request("POST", "/logstores/a", params, headers, body, lookup, now=now) == KEY_ID
    else:
        with pytest.raises(RequestTimeTooSkewed):
            verify_request("POST", "/logstores/a", params, headers, body, lookup, now=now)


def test_skew_check_can_be_turned_off() -> None:
    """max_skew=None accepts any time; a smaller max_skew is stricter."""
    headers, params, body = signed("v1")
    later = T0 + timedelta(days=3650)
    assert verify_request("POST", "/logstores/a", params, headers, body, lookup, now=later, max_skew=None) == KEY_ID
    with pytest.raises(RequestTimeTooSkewed):
        verify_request("POST", "/logstores/a", params, headers, body, lookup, now=T0 + timedelta(seconds=5),
                       max_skew=1.0)


def test_unparseable_date_is_a_clear_401() -> None:
    """A validly signed request whose Date is not a date fails with Unauthorized naming the Date, unless the
    skew check is off."""
    headers = {**API, "Date": "yesterday", "x-log-signaturemethod": "hmac-sha1"}
    headers["Authorization"] = f"LOG {KEY_ID}:{sign_v1('GET', '/', [], headers, SECRET)}"
    with pytest.raises(Unauthorized, match="Date 'yesterday'"):
        verify_request("GET", "/", [], headers, b"", lookup, now=T0)
    assert verify_request("GET", "/", [], headers, b"", lookup, now=T0, max_skew=None) == KEY_ID


# --- parse_authorization ---


def test_parse_authorization() -> None:
    """Both schemes are split into key id, signature and (v4) scope day and region."""
    assert parse_authorization("LOG testAccessKeyId:ebBClOI5cJm53m+wBcH0AVqSRY8=") == Credential(
        "v1", KEY_ID, "ebBClOI5cJm53m+wBcH0AVqSRY8=")
    assert parse_authorization(V4A_AUTHORIZATION) == Credential(
        "v4", KEY_ID, "d46f7ae1a340f32ec31dae0fcebe8df0435bb3b656b8e3855b5819a1def33b9e", date="20240101",
        region=REGION)


@pytest.mark.parametrize("value", [
    "", "LOG", "LOG id", "LOG :sig", "LOG id:", "Basic dXNlcjpwYXNz", "log id:sig",
    "SLS4-HMAC-SHA256", "SLS4-HMAC-SHA256 Signature=ab",
    "SLS4-HMAC-SHA256 Credential=id/20240101/r/sls/aliyun_v4_request",
    "SLS4-HMAC-SHA256 Credential=id/2024/r/sls/aliyun_v4_request,Signature=ab",
    "SLS4-HMAC-SHA256 Credential=id/20240101/r/oss/aliyun_v4_request,Signature=ab",
    "SLS4-HMAC-SHA256 Credential=id/20240101//sls/aliyun_v4_request,Signature=ab",
    "SLS4-HMAC-SHA256 Credential=/20240101/r/sls/aliyun_v4_request,Signature=ab",
])
def test_malformed_authorization_is_unauthorized(value: str) -> None:
    """A malformed Authorization value is Unauthorized (401) with a message saying what was expected."""
    with pytest.raises(Unauthorized, match="expected"):
        parse_authorization(value)


# --- garbage never raises anything but an SLSError ---

_any_text = st.text(st.one_of(st.characters(), st.characters(categories=["Cs"])), max_size=80)
_garbage_authorization = st.one_of(
    _any_text,
    _any_text.map(lambda t: "LOG " + t),
    _any_text.map(lambda t: f"LOG {KEY_ID}:" + t),
    _any_text.map(lambda t: "SLS4-HMAC-SHA256 " + t),
    _any_text.map(lambda t: f"SLS4-HMAC-SHA256 Credential={KEY_ID}/{t}/sls/aliyun_v4_request,Signature=" + t),
)


@pytest.fixture(scope="module")
def signed_requests() -> Iterator[dict[str, tuple[dict[str, str], list[tuple[str, str]], bytes]]]:
    yield {version: signed(version) for version in ("v1", "v4")}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    version=st.sampled_from(["v1", "v4"]),
    authorization=st.one_of(st.none(), _garbage_authorization),
    garbage=st.dictionaries(
        st.sampled_from(["date", "X-Log-Date", "content-md5", "x-log-content-sha256", "content-type",
                         "x-acs-security-token", "host"]),
        _any_text, max_size=4),
    params=st.lists(st.tuples(_any_text, _any_text), max_size=3),
    resource=_any_text,
    body=st.binary(max_size=40),
    max_skew=st.sampled_from([None, 900.0]),
)
def test_garbage_raises_only_sls_errors(
    signed_requests: dict[str, tuple[dict[str, str], list[tuple[str, str]], bytes]],
    version: str, authorization: str | None, garbage: dict[str, str], params: list[tuple[str, str]],
    resource: str, body: bytes, max_skew: float | None,
) -> None:
    """verify_request on a signed request with garbage in its Authorization, time, digest or other headers,
    path, query or body raises only SLSError subclasses (or accepts), whatever the characters."""
    headers, _, _ = signed_requests[version]
    headers = {**headers, **garbage}
    if authorization is not None:
        headers["Authorization"] = authorization
    try:
        verify_request("POST", resource, params, headers, body, lambda key_id: SECRET, now=T0, max_skew=max_skew)
    except SLSError:
        pass
