"""SLS request signing (for the client) and verification (for the hub), signature v1 and v4.

This module owns the byte-exact rules by which the official SDK (aliyun-log-python-sdk 0.9.52) signs a
request, so that our client signs like it and the hub accepts what it sends (sls-api.md sections 2 and 3):

* v1, ``Authorization: LOG <id>:<sig>``: base64 HMAC-SHA1 over the method, Content-MD5, Content-Type,
  Date, the ``x-log-*``/``x-acs-*`` headers and the resource with its query sorted and *unencoded*.
  The SDK adds ``x-log-date`` (a copy of Date) only after signing, so it is not part of the string to sign.
* v4, ``Authorization: SLS4-HMAC-SHA256 Credential=<id>/<scope>,Signature=<hex>``: a canonical request
  with an RFC 3986-encoded query, the content-type/host/``x-log-*``/``x-acs-*`` headers and the body's
  SHA-256, signed with a key derived per day and region.

Pure functions, stdlib only: no I/O, no clock unless ``now`` is left out. Verification compares signatures
in constant time and raises only ``SLSError`` subclasses, whatever the input, because the hub turns those
into SLS error responses and must never crash on a hostile header.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections import abc
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import format_datetime, parsedate_to_datetime
from typing import Callable, Iterable, Literal, Mapping, Union
from urllib.parse import quote

from .errors import ConfigError, InvalidAccessKeyId, RequestTimeTooSkewed, SignatureNotMatch, Unauthorized

__all__ = [
    "Credential",
    "Params",
    "DEFAULT_MAX_SKEW",
    "content_md5",
    "string_to_sign_v1",
    "sign_v1",
    "canonical_request_v4",
    "sign_v4",
    "sign_request",
    "parse_authorization",
    "verify_request",
]

#: Query parameters: a mapping or (key, value) pairs, values *unencoded* strings.
Params = Union[Mapping[str, str], Iterable[tuple[str, str]], None]

#: Cloud SLS rejects requests whose time is more than 15 minutes from its clock.
DEFAULT_MAX_SKEW = 900.0

V1_SCHEME = "LOG"
V4_ALGORITHM = "SLS4-HMAC-SHA256"
_V4_TERMINATOR = "aliyun_v4_request"
_V4_TIME_FORMAT = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class Credential:
    """What an ``Authorization`` header claims: who signed and the signature (v4 adds its scope)."""

    version: Literal["v1", "v4"]
    access_key_id: str
    signature: str
    date: str | None = None  # v4: the scope's day, YYYYMMDD
    region: str | None = None  # v4: the scope's region


# --- shared helpers ---


def content_md5(body: bytes) -> str:
    """The body's MD5 as the SDK sends it in ``Content-MD5``: uppercase hex."""
    return hashlib.md5(body).hexdigest().upper()


def _sha256_hex(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _utf8(text: str) -> bytes:
    # surrogateescape gives back the exact bytes of a header an HTTP server decoded with it; any other lone
    # surrogate raises UnicodeEncodeError, which verify_request turns into SignatureNotMatch.
    return text.encode("utf-8", "surrogateescape")


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _is_signed_extra(name: str) -> bool:
    """``x-log-*`` (but not ``x-log-meta-*``, which is user metadata) and ``x-acs-*``; ``name`` lowercase."""
    return (name.startswith("x-log-") and not name.startswith("x-log-meta-")) or name.startswith("x-acs-")


def _sorted_pairs(params: Params) -> list[tuple[str, str]]:
    """Sorted by key (then value, so repeated keys have one canonical order), as the SDK sorts dict items."""
    if params is None:
        return []
    if isinstance(params, list):  # the client's own (a typing.Mapping isinstance check costs microseconds)
        return sorted(params)
    items = params.items() if isinstance(params, abc.Mapping) else params
    return sorted(items)


_date_cache: tuple[int, str] = (-1, "")


def http_date(now: datetime | None = None) -> str:
    """RFC 1123 ``Date`` (locale-independent); for the current time it is formatted once per second,
    since every request of a busy client asks for it (it was ~4% of a small request's CPU)."""
    global _date_cache
    if now is not None:
        return format_datetime(_utc(now), usegmt=True)
    second = int(time.time())
    cached = _date_cache
    if cached[0] != second:
        cached = _date_cache = (second, format_datetime(datetime.fromtimestamp(second, timezone.utc), usegmt=True))
    return cached[1]


def _utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(timezone.utc)
    if now.tzinfo is None:  # naive: taken as UTC
        return now.replace(tzinfo=timezone.utc)
    return now.astimezone(timezone.utc)


def _same(expected: str, claimed: str) -> bool:
    """Constant-time comparison (on bytes: compare_digest refuses non-ASCII str)."""
    return hmac.compare_digest(_utf8(expected), _utf8(claimed))


# --- v1 ---


def string_to_sign_v1(
    method: str, resource: str, params: Params, headers: Mapping[str, str], *, sign_x_log_date: bool = False
) -> str:
    """The v1 string to sign; ``headers`` as sent (any case), ``params`` unencoded.

    The date line is ``Date``, or ``x-log-date`` where a proxy dropped ``Date``. ``x-log-date`` itself is
    left out of the canonical headers, because the SDK adds it after signing, unless ``sign_x_log_date``.
    """
    h = _lower(headers)
    names = sorted(n for n in h if _is_signed_extra(n) and (sign_x_log_date or n != "x-log-date"))
    lines = [
        method,
        h.get("content-md5", ""),
        h.get("content-type", ""),
        h.get("date", h.get("x-log-date", "")),
        *(f"{n}:{h[n]}" for n in names),
    ]
    pairs = _sorted_pairs(params)
    query = "&".join(f"{k}={v}" for k, v in pairs)  # unencoded; an empty value keeps its "="
    return "\n".join(lines) + "\n" + resource + (f"?{query}" if pairs else "")


def sign_v1(
    method: str,
    resource: str,
    params: Params,
    headers: Mapping[str, str],
    secret: str,
    *,
    sign_x_log_date: bool = False,
) -> str:
    """The v1 signature: base64 HMAC-SHA1 of the string to sign, keyed by the access key secret."""
    message = string_to_sign_v1(method, resource, params, headers, sign_x_log_date=sign_x_log_date)
    return base64.b64encode(hmac.digest(_utf8(secret), _utf8(message), "sha1")).decode("ascii")


# --- v4 ---


def _canonical_query_v4(params: Params) -> str:
    """Values RFC 3986-encoded (UTF-8), keys as they are; an empty value is written as the bare key."""
    parts = []
    for key, value in _sorted_pairs(params):
        encoded = quote(_utf8(value), safe="-_.~")
        parts.append(f"{key}={encoded}" if encoded else key)
    return "&".join(parts)


def canonical_request_v4(
    method: str, resource: str, params: Params, headers: Mapping[str, str], payload_sha256: str
) -> str:
    """The v4 canonical request: method, path, query, header block, signed-header names, payload hash."""
    h = _lower(headers)
    names = sorted(n for n in h if n in ("content-type", "host") or _is_signed_extra(n))
    header_block = "".join(f"{n}:{h[n].strip()}\n" for n in names)  # joined below: a blank line follows it
    return "\n".join(
        [method, resource, _canonical_query_v4(params), header_block, ";".join(names), payload_sha256]
    )


def _scope_v4(day: str, region: str) -> str:
    return f"{day}/{region}/sls/{_V4_TERMINATOR}"


def _signing_key_v4(secret: str, day: str, region: str) -> bytes:
    key = _utf8("aliyun_v4" + secret)
    for part in (day, region, "sls", _V4_TERMINATOR):
        key = hmac.new(key, _utf8(part), hashlib.sha256).digest()
    return key


def _v4_texts(
    method: str, resource: str, params: Params, headers: Mapping[str, str], body: bytes, region: str, x_log_date: str
) -> tuple[str, str]:
    """(canonical request, string to sign). ``x-log-date`` and ``x-log-content-sha256`` are signed headers:
    when ``headers`` lacks them they are taken as ``sign_request`` sets them. The payload line is the
    ``x-log-content-sha256`` header, as the SDK signs it (``verify_request`` checks it against the body).
    """
    h = _lower(headers)
    h.setdefault("x-log-date", x_log_date)
    h.setdefault("x-log-content-sha256", _sha256_hex(body))
    canonical = canonical_request_v4(method, resource, params, h, h["x-log-content-sha256"])
    digest = hashlib.sha256(_utf8(canonical)).hexdigest()
    string_to_sign = f"{V4_ALGORITHM}\n{x_log_date}\n{_scope_v4(x_log_date[:8], region)}\n{digest}"
    return canonical, string_to_sign


def sign_v4(
    method: str,
    resource: str,
    params: Params,
    headers: Mapping[str, str],
    body: bytes,
    secret: str,
    region: str,
    x_log_date: str,
) -> str:
    """The v4 signature (hex) of a request sent at ``x_log_date`` (``YYYYMMDDTHHMMSSZ``, UTC)."""
    _, string_to_sign = _v4_texts(method, resource, params, headers, body, region, x_log_date)
    key = _signing_key_v4(secret, x_log_date[:8], region)
    return hmac.new(key, _utf8(string_to_sign), hashlib.sha256).hexdigest()


# --- signing a request (the client) ---


def sign_request(
    method: str,
    resource: str,
    params: Params,
    headers: Mapping[str, str],
    body: bytes,
    access_key_id: str,
    secret: str,
    *,
    version: str = "v1",
    region: str | None = None,
    security_token: str | None = None,
    now: datetime | None = None,
) -> dict[str, str]:
    """The headers to add to a request, with the names, values and order the SDK adds them.

    ``headers`` are those already on the request (``x-log-apiversion``, ``Content-Type``,
    ``x-log-bodyrawsize``, ``Host``, ...); ``resource`` is the path as built, unencoded; ``params`` unencoded.
    """
    added: dict[str, str] = {}
    if security_token:
        added["x-acs-security-token"] = security_token  # signed, in both versions
    if version == "v4":
        if not region:
            raise ConfigError("signature v4 needs the region (region=...)")
        stamp = _utc(now).strftime(_V4_TIME_FORMAT)
        added["x-log-content-sha256"] = _sha256_hex(body)
        added["x-log-date"] = stamp
        signature = sign_v4(method, resource, params, {**headers, **added}, body, secret, region, stamp)
        added["Authorization"] = (
            f"{V4_ALGORITHM} Credential={access_key_id}/{_scope_v4(stamp[:8], region)},Signature={signature}"
        )
        return added
    if version != "v1":
        raise ConfigError(f"unknown signature version {version!r}: use 'v1' or 'v4'")
    added["x-log-signaturemethod"] = "hmac-sha1"
    added["Date"] = http_date(now)
    if body:
        added["Content-MD5"] = content_md5(body)
    if not secret:
        # The SDK sends a v1 request unsigned (no Authorization, no x-log-date) when the secret is empty.
        return added
    signature = sign_v1(method, resource, params, {**headers, **added}, secret)
    added["Authorization"] = f"{V1_SCHEME} {access_key_id}:{signature}"
    added["x-log-date"] = added["Date"]  # after signing, so not signed: for proxies that drop Date
    return added


# --- verifying a request (the hub) ---


def parse_authorization(value: str) -> Credential:
    """Split an ``Authorization`` value into its claims; a malformed value raises ``Unauthorized``."""
    scheme, _, rest = value.strip().partition(" ")
    rest = rest.strip()
    if scheme == V1_SCHEME:
        key_id, colon, signature = rest.rpartition(":")
        if not colon or not key_id or not signature:
            raise Unauthorized("malformed Authorization header: expected 'LOG <AccessKeyId>:<Signature>'")
        return Credential("v1", key_id, signature)
    if scheme == V4_ALGORITHM:
        return _parse_v4(rest)
    raise Unauthorized(f"unsupported Authorization scheme {scheme[:40]!r}: expected 'LOG' or {V4_ALGORITHM!r}")


def _parse_v4(rest: str) -> Credential:
    expected = (
        f"expected '{V4_ALGORITHM} Credential=<AccessKeyId>/<YYYYMMDD>/<region>/sls/{_V4_TERMINATOR},"
        f"Signature=<hex>'"
    )
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, equals, field = part.partition("=")
        if equals:
            fields[name.strip()] = field.strip()
    scope = fields.get("Credential", "").rsplit("/", 4)
    signature = fields.get("Signature", "")
    if len(scope) != 5 or not signature:
        raise Unauthorized(f"malformed Authorization header: {expected}")
    key_id, day, region, service, terminator = scope
    if not key_id or not region or not (len(day) == 8 and day.isascii() and day.isdigit()):
        raise Unauthorized(f"malformed Authorization header: {expected}")
    if service != "sls" or terminator != _V4_TERMINATOR:
        raise Unauthorized(f"malformed Authorization header: {expected}")
    return Credential("v4", key_id, signature, date=day, region=region)


def verify_request(
    method: str,
    resource: str,
    query_pairs: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
    lookup_secret: Callable[[str], str | None],
    *,
    now: datetime | None = None,
    max_skew: float | None = DEFAULT_MAX_SKEW,
) -> str:
    """Check a request's signature and time; return the access key id that signed it.

    ``resource`` is the percent-decoded path, ``query_pairs`` the form-decoded query in request order,
    ``headers`` as received (any case). ``max_skew`` (seconds) bounds the distance between the request's
    time and ``now``; ``None`` turns the check off. Raises ``Unauthorized`` (no or malformed Authorization),
    ``InvalidAccessKeyId``, ``SignatureNotMatch`` or ``RequestTimeTooSkewed``, and never anything else.
    """
    h = _lower(headers)
    authorization = h.get("authorization", "").strip()
    if not authorization:
        raise Unauthorized("the request is not signed: no Authorization header")
    credential = parse_authorization(authorization)
    secret = lookup_secret(credential.access_key_id)
    if secret is None:
        raise InvalidAccessKeyId(f"the access key id {credential.access_key_id!r} does not exist")
    pairs = list(query_pairs)
    try:
        if credential.version == "v4":
            _verify_v4(method, resource, pairs, h, body, secret, credential)
        else:
            _verify_v1(method, resource, pairs, h, body, secret, credential)
    except UnicodeEncodeError as exc:  # a lone surrogate that cannot be the bytes of any request
        raise SignatureNotMatch(f"the request cannot be verified: {exc}") from None
    # The time is checked after the signature, so a forger learns nothing and a client with a correct key
    # but a wrong clock is told about its clock.
    if max_skew is not None:
        request_time = _request_time(credential.version, h)
        skew = abs((_utc(now) - request_time).total_seconds())
        if skew > max_skew:
            raise RequestTimeTooSkewed(
                f"the request time {request_time:%Y-%m-%dT%H:%M:%SZ} is {skew:.0f}s from the server's clock "
                f"(at most {max_skew:.0f}s allowed)"
            )
    return credential.access_key_id


def _verify_v1(
    method: str,
    resource: str,
    pairs: list[tuple[str, str]],
    h: dict[str, str],
    body: bytes,
    secret: str,
    credential: Credential,
) -> None:
    # The signature covers Content-MD5, not the body: the body is bound only if its MD5 is sent and right.
    claimed_md5 = h.get("content-md5")
    if body and claimed_md5 is None:
        raise SignatureNotMatch("a request with a body signed with v1 must send Content-MD5")
    if claimed_md5 is not None and claimed_md5.strip().upper() != content_md5(body):
        raise SignatureNotMatch(f"Content-MD5 {claimed_md5!r} does not match the body (MD5 {content_md5(body)})")
    # The SDK signs without x-log-date (it adds it afterwards); other clients may sign it.
    for sign_x_log_date in (False, True) if "x-log-date" in h else (False,):
        expected = sign_v1(method, resource, pairs, h, secret, sign_x_log_date=sign_x_log_date)
        if _same(expected, credential.signature):
            return
    string_to_sign = string_to_sign_v1(method, resource, pairs, h)
    raise SignatureNotMatch(
        f"the v1 signature {credential.signature!r} does not match; the server's string to sign is "
        f"{string_to_sign!r}"
    )


def _verify_v4(
    method: str,
    resource: str,
    pairs: list[tuple[str, str]],
    h: dict[str, str],
    body: bytes,
    secret: str,
    credential: Credential,
) -> None:
    stamp = h.get("x-log-date", "").strip()
    if not stamp:
        raise Unauthorized(f"a request signed with {V4_ALGORITHM} must send x-log-date (YYYYMMDDTHHMMSSZ)")
    if stamp[:8] != credential.date:
        raise SignatureNotMatch(f"the credential scope's day {credential.date} is not the day of x-log-date {stamp!r}")
    claimed_sha = h.get("x-log-content-sha256")
    if claimed_sha is not None and claimed_sha.strip().lower() != _sha256_hex(body):
        raise SignatureNotMatch(
            f"x-log-content-sha256 {claimed_sha!r} does not match the body (SHA-256 {_sha256_hex(body)})"
        )
    region = credential.region or ""
    canonical, string_to_sign = _v4_texts(method, resource, pairs, h, body, region, stamp)
    key = _signing_key_v4(secret, stamp[:8], region)
    expected = hmac.new(key, _utf8(string_to_sign), hashlib.sha256).hexdigest()
    if not _same(expected, credential.signature):
        raise SignatureNotMatch(
            f"the v4 signature does not match; the server's canonical request is {canonical!r} and its string "
            f"to sign is {string_to_sign!r}"
        )


def _request_time(version: str, h: Mapping[str, str]) -> datetime:
    """When the client says it sent the request: v4 ``x-log-date``, v1 ``Date`` (or ``x-log-date``)."""
    if version == "v4":
        text = h.get("x-log-date", "").strip()
        try:
            return datetime.strptime(text, _V4_TIME_FORMAT).replace(tzinfo=timezone.utc)
        except ValueError:
            raise Unauthorized(f"x-log-date {text[:64]!r} is not a time of the form YYYYMMDDTHHMMSSZ") from None
    text = (h.get("date") or h.get("x-log-date") or "").strip()
    if not text:
        raise Unauthorized("the request has no Date header, so its age cannot be checked")
    try:
        return _utc(parsedate_to_datetime(text))
    except (TypeError, ValueError, IndexError, OverflowError):
        raise Unauthorized(
            f"Date {text[:64]!r} is not an RFC 1123 date such as 'Mon, 01 Jan 2024 00:00:00 GMT'"
        ) from None
