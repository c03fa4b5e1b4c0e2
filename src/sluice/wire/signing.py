"""SLS request signing and verification, signature v1 (HMAC-SHA1) and v4 (SLS4-HMAC-SHA256), exactly as
the official SDK produces them. Pure: no I/O, stdlib only.

v1 string to sign: method, Content-MD5, Content-Type, Date, then every ``x-log-*`` (but ``x-log-meta-*``)
and ``x-acs-*`` header as ``name:value\\n`` sorted by name, then the resource with its query sorted by key,
values unencoded. The SDK adds ``x-log-date`` *after* signing, so a verifier leaves it out (and tries
with it only as a fallback, for clients that sign it).

v4: canonical request = method, path, canonical query (RFC 3986-encoded values, bare key for an empty
value), canonical headers (content-type, host, x-log-*, x-acs-*), signed header names, payload SHA-256;
key = HMAC chain of "aliyun_v4"+secret over date, region, "sls", "aliyun_v4_request".

Verification compares in constant time, and refuses requests whose time is too far from ours (replay).
Every failure is an ``SLSError`` subclass; garbage input never raises anything else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import format_datetime, parsedate_to_datetime
from typing import Callable, Mapping, Sequence, Union
from urllib.parse import quote

from .errors import InvalidAccessKeyId, RequestTimeTooSkewed, SignatureNotMatch, Unauthorized

__all__ = [
    "Credential",
    "content_md5",
    "string_to_sign_v1",
    "sign_v1",
    "canonical_request_v4",
    "sign_v4",
    "sign_request",
    "parse_authorization",
    "verify_request",
]

Params = Union[Sequence[tuple[str, str]], Mapping[str, str]]
_V4_ALGORITHM = "SLS4-HMAC-SHA256"
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class Credential:
    """What an ``Authorization`` header claims."""

    version: str  # "v1" | "v4"
    access_key_id: str
    signature: str
    date: str = ""  # v4 scope date YYYYMMDD
    region: str = ""


def _pairs(params: Params | None) -> list[tuple[str, str]]:
    if not params:
        return []
    items = params.items() if isinstance(params, Mapping) else params
    return [(str(k), str(v)) for k, v in items]


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _is_canonical(name: str) -> bool:
    return (name.startswith("x-log-") and not name.startswith("x-log-meta-")) or name.startswith("x-acs-")


def content_md5(body: bytes) -> str:
    return hashlib.md5(body).hexdigest().upper()


def string_to_sign_v1(method: str, resource: str, params: Params | None, headers: Mapping[str, str],
                      *, exclude: tuple[str, ...] = ("x-log-date",)) -> str:
    h = _lower(headers)
    canon = "".join(f"{k}:{h[k]}\n" for k in sorted(k for k in h if _is_canonical(k) and k not in exclude))
    pairs = sorted(_pairs(params), key=lambda kv: kv[0])
    res = resource + ("?" + "&".join(f"{k}={v}" for k, v in pairs) if pairs else "")
    return f"{method.upper()}\n{h.get('content-md5', '')}\n{h.get('content-type', '')}\n{h.get('date', '')}\n{canon}{res}"


def sign_v1(method: str, resource: str, params: Params | None, headers: Mapping[str, str], secret: str,
            *, exclude: tuple[str, ...] = ("x-log-date",)) -> str:
    msg = string_to_sign_v1(method, resource, params, headers, exclude=exclude)
    return base64.b64encode(hmac.new(secret.encode(), msg.encode(), hashlib.sha1).digest()).decode()


def _canonical_query_v4(params: Params | None) -> str:
    out = []
    for k, v in sorted(_pairs(params), key=lambda kv: kv[0]):
        out.append(f"{k}={quote(v, safe='-_.~')}" if v != "" else k)
    return "&".join(out)


def canonical_request_v4(method: str, resource: str, params: Params | None, headers: Mapping[str, str],
                         payload_sha256: str) -> tuple[str, str]:
    """The canonical request and the signed-header list."""
    h = _lower(headers)
    names = sorted(k for k in h if k in ("content-type", "host") or _is_canonical(k))
    block = "".join(f"{k}:{h[k].strip()}\n" for k in names)
    signed = ";".join(names)
    return "\n".join([method.upper(), resource, _canonical_query_v4(params), block, signed, payload_sha256]), signed


def _v4_key(secret: str, date: str, region: str) -> bytes:
    key = ("aliyun_v4" + secret).encode()
    for part in (date, region, "sls", "aliyun_v4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def sign_v4(method: str, resource: str, params: Params | None, headers: Mapping[str, str], body: bytes,
            secret: str, region: str, x_log_date: str) -> str:
    h = _lower(headers)
    payload = h.get("x-log-content-sha256") or (hashlib.sha256(body).hexdigest() if body else _EMPTY_SHA256)
    canonical, _ = canonical_request_v4(method, resource, params, h, payload)
    date = x_log_date[:8]
    scope = f"{date}/{region}/sls/aliyun_v4_request"
    to_sign = f"{_V4_ALGORITHM}\n{x_log_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    return hmac.new(_v4_key(secret, date, region), to_sign.encode(), hashlib.sha256).hexdigest()


def sign_request(method: str, resource: str, params: Params | None, headers: Mapping[str, str], body: bytes,
                 access_key_id: str, secret: str, *, version: str = "v1", region: str | None = None,
                 security_token: str | None = None, now: datetime | None = None) -> dict[str, str]:
    """The headers to add to a request so that SLS (or the hub) accepts it, as the SDK adds them."""
    now = now or datetime.now(timezone.utc)
    add: dict[str, str] = {}
    if security_token:
        add["x-acs-security-token"] = security_token
    if version == "v4":
        if not region:
            raise ValueError("signature v4 needs a region")
        stamp = now.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        add["x-log-content-sha256"] = hashlib.sha256(body).hexdigest() if body else _EMPTY_SHA256
        add["x-log-date"] = stamp
        sig = sign_v4(method, resource, params, {**headers, **add}, body, secret, region, stamp)
        add["Authorization"] = (f"{_V4_ALGORITHM} Credential={access_key_id}/{stamp[:8]}/{region}/sls/"
                                f"aliyun_v4_request,Signature={sig}")
        return add
    if body:
        add["Content-MD5"] = content_md5(body)
    add["Date"] = format_datetime(now.astimezone(timezone.utc), usegmt=True)
    add["x-log-signaturemethod"] = "hmac-sha1"
    sig = sign_v1(method, resource, params, {**headers, **add}, secret)
    add["Authorization"] = f"LOG {access_key_id}:{sig}"
    add["x-log-date"] = add["Date"]
    return add


def parse_authorization(value: str) -> Credential:
    value = (value or "").strip()
    if value.startswith("LOG "):
        key_id, sep, sig = value[4:].strip().rpartition(":")
        if not sep or not key_id or not sig:
            raise Unauthorized("malformed Authorization header: expected 'LOG <accessKeyId>:<signature>'")
        return Credential("v1", key_id, sig)
    if value.startswith(_V4_ALGORITHM + " "):
        fields: dict[str, str] = {}
        for part in value[len(_V4_ALGORITHM) + 1:].split(","):
            k, sep, v = part.strip().partition("=")
            if sep:
                fields[k.strip()] = v.strip()
        scope = fields.get("Credential", "").split("/")
        sig = fields.get("Signature", "")
        if len(scope) != 5 or not scope[0] or not sig or scope[3] != "sls" or scope[4] != "aliyun_v4_request":
            raise Unauthorized("malformed SLS4-HMAC-SHA256 Authorization header")
        return Credential("v4", scope[0], sig, scope[1], scope[2])
    raise Unauthorized("unsupported Authorization scheme: use 'LOG' (v1) or 'SLS4-HMAC-SHA256' (v4)")


def _request_time(version: str, h: Mapping[str, str]) -> datetime:
    try:
        if version == "v4":
            return datetime.strptime(h.get("x-log-date", ""), "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
        text = h.get("date") or h.get("x-log-date") or ""
        t = parsedate_to_datetime(text)
        return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
    except (ValueError, TypeError, IndexError, OverflowError):
        raise Unauthorized("the request has no valid Date (v1) or x-log-date (v4) header") from None


def verify_request(method: str, resource: str, query_pairs: Sequence[tuple[str, str]], headers: Mapping[str, str],
                   body: bytes, lookup_secret: Callable[[str], str | None], *, now: datetime | None = None,
                   max_skew: float | None = 900.0) -> str:
    """Check a request's signature; return the access key id that signed it."""
    h = _lower(headers)
    auth = h.get("authorization")
    if not auth:
        raise Unauthorized("the request is not signed (no Authorization header)")
    cred = parse_authorization(auth)
    secret = lookup_secret(cred.access_key_id)
    if secret is None:
        raise InvalidAccessKeyId(f"access key id {cred.access_key_id!r} does not exist")
    if max_skew is not None:
        skew = abs(((now or datetime.now(timezone.utc)) - _request_time(cred.version, h)).total_seconds())
        if skew > max_skew:
            raise RequestTimeTooSkewed(f"the request time is {skew:.0f}s away from the hub's clock "
                                       f"(allowed {max_skew:.0f}s)")
    try:
        if cred.version == "v4":
            expected_sha = hashlib.sha256(body).hexdigest() if body else _EMPTY_SHA256
            claimed = h.get("x-log-content-sha256", expected_sha)
            if claimed != "UNSIGNED-PAYLOAD" and not hmac.compare_digest(claimed, expected_sha):
                raise SignatureNotMatch("x-log-content-sha256 does not match the body")
            stamp = h.get("x-log-date", "")
            if stamp[:8] != cred.date:
                raise SignatureNotMatch("the credential scope date does not match x-log-date")
            good = sign_v4(method, resource, query_pairs, h, body, secret, cred.region, stamp)
            if hmac.compare_digest(good, cred.signature):
                return cred.access_key_id
            canonical, _ = canonical_request_v4(method, resource, query_pairs, h, h.get("x-log-content-sha256", ""))
            raise SignatureNotMatch(f"signature v4 does not match; canonical request: {canonical!r}")
        if body and h.get("content-md5") and not hmac.compare_digest(h["content-md5"].upper(), content_md5(body)):
            raise SignatureNotMatch("Content-MD5 does not match the body")
        for exclude in (("x-log-date",), ()):
            good = sign_v1(method, resource, query_pairs, h, secret, exclude=exclude)
            if hmac.compare_digest(good, cred.signature):
                return cred.access_key_id
        expected = string_to_sign_v1(method, resource, query_pairs, h)
        raise SignatureNotMatch(f"signature v1 does not match; the hub's string to sign is {expected!r}")
    except (UnicodeError, ValueError) as exc:
        raise SignatureNotMatch(f"the request cannot be verified: {exc}") from None
