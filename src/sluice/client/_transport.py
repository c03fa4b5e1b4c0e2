"""HTTP transport of the client: SLS addressing, signing, retries, over the connection pool of ``_http.py``.

Addressing: SLS routes a request by ``Host: <project>.<endpoint host>``. Against an IP or ``localhost``
(the hub) we connect to the endpoint itself and only set that Host header, so any port works with no DNS
or proxy tricks. Against a DNS name (Alibaba Cloud) we connect to ``<project>.<host>``, as the SDK does.

TLS (``https://`` endpoints): the server's certificate is always verified unless ``tls_verify=False``,
against ``ca_bundle`` (a PEM file) when given, else the system store, which honours ``SSL_CERT_FILE`` and
``SSL_CERT_DIR``. A certificate that fails verification is a configuration problem, not a network blip:
it raises ``ConfigError`` at once, naming the options, instead of being retried.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import re
import ssl as _ssl
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence
from urllib.parse import quote

from .. import __version__
from ..wire.errors import ConfigError, SLSError, TransportError, for_code
from ..wire.signing import sign_request
from ._http import CertificateError, ConnectionPool, HTTPError

__all__ = ["Endpoint", "Transport", "Response", "RetryPolicy", "tls_context"]

log = logging.getLogger("sluice.client")

_IPV4 = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")
API_VERSION = "0.6.0"
_INLINE_BODY = 64 << 10  # bodies up to this size go out in the same write as the head (one syscall)


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str
    port: int

    @classmethod
    def parse(cls, endpoint: str) -> "Endpoint":
        text = endpoint.strip()
        scheme = "http"
        if "://" in text:
            scheme, text = text.split("://", 1)
            scheme = scheme.lower()
        text = text.split("/", 1)[0]
        host, _, port = text.partition(":")
        default = 443 if scheme == "https" else 80
        return cls(scheme, host.lower(), int(port) if port else default)

    @functools.cached_property
    def is_direct(self) -> bool:
        """Connect to the endpoint itself (an IP or localhost: a hub) rather than ``<project>.<host>``."""
        return bool(_IPV4.fullmatch(self.host)) or self.host == "localhost" or self.host.endswith(".localhost")

    @property
    def origin(self) -> str:
        """``scheme://host:port``, as errors and ``AsyncClient.endpoint`` name the endpoint."""
        return f"{self.scheme}://{self.host}:{self.port}"

    def connect_host(self, project: str | None) -> str:
        """The host to connect to (and, over TLS, to verify): ``<project>.<host>`` on a DNS endpoint."""
        return self.host if (project is None or self.is_direct) else f"{project}.{self.host}"

    def host_header(self, project: str | None) -> str:
        return f"{project}.{self.host}" if project else self.host


@dataclass(frozen=True)
class RetryPolicy:
    """Retry throttling, 5xx and transport failures with capped exponential backoff and jitter."""

    attempts: int = 6
    base_delay: float = 0.2
    max_delay: float = 5.0

    def delay(self, attempt: int) -> float:
        return min(self.max_delay, self.base_delay * (2 ** attempt)) * (0.5 + random.random() / 2)


@dataclass
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes
    request_id: str = ""

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Credentials:
    access_key_id: str = ""
    access_key_secret: str = ""
    security_token: str | None = None
    auth_version: str = "v1"
    region: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


def tls_context(ca_bundle: str | None = None, verify: bool = True) -> _ssl.SSLContext:
    """The client's TLS context: verification on (hostname and chain) unless ``verify`` is False;
    ``ca_bundle`` replaces the system store, which ``SSL_CERT_FILE``/``SSL_CERT_DIR`` point elsewhere."""
    if not verify:
        ctx = _ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = _ssl.CERT_NONE
        return ctx
    try:
        return _ssl.create_default_context(cafile=ca_bundle)
    except FileNotFoundError:
        raise ConfigError(f"ca_bundle {ca_bundle}: no such file") from None
    except (_ssl.SSLError, OSError) as exc:
        raise ConfigError(f"ca_bundle {ca_bundle} is not a PEM file of CA certificates: {exc}") from None


class Transport:
    """Sends one SLS request (signed, retried) and returns the response or raises ``SLSError``.

    ``ssl`` (an ``SSLContext``, or False for no certificate check) overrides ``ca_bundle``/``tls_verify``.
    Connections belong to the event loop of their first request; a client used from another loop later
    starts a new pool there."""

    def __init__(self, endpoint: str, credentials: Credentials, *, timeout: float = 60.0,
                 retry: RetryPolicy | None = None, ssl: Any = None, user_agent: str | None = None,
                 ca_bundle: str | None = None, tls_verify: bool = True) -> None:
        self.endpoint = Endpoint.parse(endpoint)
        self.credentials = credentials
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        if self.endpoint.scheme == "https":
            if ssl is False:
                tls_verify, ssl = False, None
            if not tls_verify:
                log.warning("TLS certificate verification is off for %s: anyone on the path can read and "
                            "change this traffic", endpoint)
            if ssl is None:
                ssl = tls_context(ca_bundle, tls_verify)
        else:
            ssl = None
        self.ssl: _ssl.SSLContext | None = ssl
        self.user_agent = user_agent or f"sluice/{__version__}"
        self._pool: ConnectionPool | None = None
        self._pool_loop: asyncio.AbstractEventLoop | None = None

    def _get_pool(self) -> ConnectionPool:
        loop = asyncio.get_running_loop()
        if self._pool is None or self._pool_loop is not loop:
            self._pool, self._pool_loop = ConnectionPool(self.ssl), loop
        return self._pool

    async def aclose(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = self._pool_loop = None
            await asyncio.sleep(0)  # let the transports run their close callbacks

    def _what(self, method: str, target: str) -> str:
        return f"{method} {self.endpoint.origin}{target}"

    async def request(self, method: str, resource: str, *, project: str | None = None,
                      params: Sequence[tuple[str, str]] | None = None, headers: Mapping[str, str] | None = None,
                      body: bytes = b"", timeout: float | None = None, retry: bool = True) -> Response:
        params = list(params or [])
        attempts = self.retry.attempts if retry else 1
        for attempt in range(attempts):
            try:
                return await self._send_once(method, resource, project, params, headers or {}, body, timeout)
            except (SLSError, TransportError) as exc:
                if not exc.retriable and not (isinstance(exc, SLSError) and exc.http_status >= 500):
                    raise
                if attempt + 1 >= attempts:
                    raise
                delay = self.retry.delay(attempt)
                log.warning("%s %s failed (%s), retrying in %.2fs", method, resource, exc, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _send_once(self, method: str, resource: str, project: str | None, params: list[tuple[str, str]],
                         extra_headers: Mapping[str, str], body: bytes, timeout: float | None) -> Response:
        host, port, head, body, target = self.prepare(method, resource, project, params, extra_headers, body)
        try:
            async with asyncio.timeout(timeout or self.timeout):
                resp = await self._get_pool().request(host, port, head, body)
        except TimeoutError as exc:
            raise TransportError(f"{self._what(method, target)}: timed out") from exc
        except CertificateError as exc:
            raise ConfigError(
                f"{self._what(method, target)}: the server's TLS certificate could not be verified ({exc.reason}); "
                f"give its CA with ca_bundle=PATH (or SSL_CERT_FILE), or tls_verify=False for testing only"
            ) from exc
        except HTTPError as exc:
            raise TransportError(f"{self._what(method, target)}: {exc}") from exc
        return self.interpret(resp.status, resp.headers, resp.body)

    def prepare(self, method: str, resource: str, project: str | None, params: Sequence[tuple[str, str]],
                extra_headers: Mapping[str, str], body: bytes) -> tuple[str, int, bytes, bytes, str]:
        """One request as bytes, signed with the current credentials: (host to connect to, port, head (with
        a small body inlined), the body still to send after it, request target). Also used by the compat
        LogClient's blocking writes (client/_blocking.py)."""
        ep = self.endpoint
        headers = {
            "x-log-apiversion": API_VERSION,
            "Host": ep.host_header(project),
            "User-Agent": self.user_agent,
        }
        if not body:
            headers["x-log-bodyrawsize"] = "0"
        headers.update(extra_headers)
        cred = self.credentials
        if cred.access_key_secret:
            headers.update(sign_request(method, resource, params, headers, body, cred.access_key_id,
                                        cred.access_key_secret, version=cred.auth_version, region=cred.region,
                                        security_token=cred.security_token))
        elif cred.security_token:
            headers["x-acs-security-token"] = cred.security_token
        query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params)
        target = quote(resource, safe="/") + (f"?{query}" if query else "")
        if body or method in ("POST", "PUT"):
            headers["Content-Length"] = str(len(body))
        lines = [f"{method} {target} HTTP/1.1\r\n"]
        for name, value in headers.items():
            if "\n" in value or "\r" in value:
                raise ConfigError(f"header {name} holds a line break: {value!r}")
            lines.append(f"{name}: {value}\r\n")
        lines.append("\r\n")
        head = "".join(lines).encode()
        if len(body) <= _INLINE_BODY:
            head, body = head + body, b""
        return ep.connect_host(project), ep.port, head, body, target

    @staticmethod
    def interpret(status: int, rheaders: Mapping[str, str], data: bytes) -> Response:
        """The ``Response`` of a 200, else the ``SLSError`` the server's error body names."""
        request_id = rheaders.get("x-log-requestid", "")
        if status == 200:
            return Response(status, rheaders, data, request_id)
        try:
            err = json.loads(data)
            code, message = err["errorCode"], err["errorMessage"]
        except (ValueError, KeyError, TypeError):
            raise for_code("BadResponse" if data else "LogRequestError",
                           f"HTTP {status} with body {data[:200]!r}", http_status=status,
                           request_id=request_id) from None
        raise for_code(code, message, http_status=status, request_id=request_id)
