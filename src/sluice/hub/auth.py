"""Access keys, the signature check of every request (SLS signature v1 and v4, as the SDK signs), and what
each key may do.

With ``--no-auth`` the hub accepts any request, signed or not (the signature is not checked). Otherwise
every request must be signed by one of the configured keys. A verified request yields a ``Principal``: the
key and what it may do. Everything that decides what a caller may see (the API, the web console) asks the
principal, so there is one place where access is decided.

Access rules (docs/security.md). A key is limited to a set of projects (or all) and may be read-only:

* a project outside the key's set answers 401 ``Unauthorized`` whether it exists or not, and ListProject
  lists only the key's projects, so a key never learns another project's data or name;
* read-only keys may read and may run consumers: the consumer-group bookkeeping a reader needs (create and
  update its group, heartbeat, commit checkpoints) is allowed (SLS too makes each its own RAM action,
  apart from writing logs); deleting a group, PutLogs and every logstore, shard or project change are writes;
* creating and deleting projects needs a key for every project that is not read-only.

This module decides; it does no I/O and knows no HTTP beyond header names.
"""

from __future__ import annotations

import enum
import hmac
import time
from dataclasses import dataclass
from typing import Mapping, Sequence

from ..wire import errors as E
from ..wire.signing import verify_request
from .config import AccessKey, HubConfig

__all__ = ["Authenticator", "Principal", "ANONYMOUS", "Access", "authorize", "refuse_duplicate_signed_headers"]


class Access(enum.Enum):
    """What an API does to its project, for the access decision. Each route-table entry (``hub/routes.py``)
    names its class; a request no entry takes is a WRITE."""

    READ = "read"  # only reads a project's data or metadata
    CONSUME = "consume"  # consumer-group bookkeeping a reader needs (create/update group, heartbeat, checkpoint)
    WRITE = "write"  # PutLogs, logstore, shard and project changes, DeleteConsumerGroup, anything unknown
    ADMIN = "admin"  # the project namespace itself (create, delete a project)
    LIST = "list"  # ListProject: open to every key, filtered to the key's projects by the handler


_TOKEN_HEADER = "x-acs-security-token"


@dataclass(frozen=True)
class Principal:
    """Who made a request. ``projects`` None means every project; ``read_only`` forbids writes;
    ``expires`` (unix seconds) is when the key stops working, so a console session ends with it."""

    key_id: str | None
    projects: frozenset[str] | None = None
    read_only: bool = False
    expires: float | None = None

    def can_read(self, project: str) -> bool:
        return self.projects is None or project in self.projects

    def can_write(self, project: str) -> bool:
        return not self.read_only and self.can_read(project)

    def can_consume(self, project: str) -> bool:
        """Run a consumer group (heartbeats, checkpoints, create/update the group): what a reader needs."""
        return self.can_read(project)

    @property
    def is_unrestricted(self) -> bool:
        """Every project, read and write: may also create and delete projects."""
        return self.projects is None and not self.read_only

    def may(self, access: Access, project: str | None) -> bool:
        """Whether this principal may call an API of class ``access`` on ``project`` (None: the request names
        no project)."""
        if access is Access.LIST:
            return True  # filtered to the principal's projects by the handler
        if access is Access.ADMIN:
            return self.is_unrestricted
        if project is None:
            return True  # the route answers ProjectNotExist; nothing to protect
        if access is Access.READ:
            return self.can_read(project)
        if access is Access.CONSUME:
            return self.can_consume(project)
        return self.can_write(project)


ANONYMOUS = Principal(key_id=None)  # what every request is with --no-auth


def authorize(principal: Principal, access: Access, api: str, project: str | None) -> None:
    """Raise SLS's 401 ``Unauthorized`` unless ``principal`` may call ``api`` (of class ``access``) on
    ``project``.

    The refusal for a project outside the key's set reads the same whether the project exists or not, and
    is decided before anything looks the project up, so it reveals nothing about other projects."""
    if principal.may(access, project):
        return
    if access is Access.ADMIN:
        why = "creating or deleting projects needs an access key for every project that is not read-only"
    elif principal.read_only and (project is None or principal.can_read(project)):
        why = f"access key {principal.key_id!r} is read-only"
    else:
        why = f"access key {principal.key_id!r} is not granted this project"
    raise E.Unauthorized(f"denied by sts or ram, action: log:{api}, resource: project/{project or '*'}: {why}")


_SIGNED_PLAIN = frozenset({"authorization", "content-md5", "content-type", "date", "host"})


def _is_signed(name: str) -> bool:
    """Headers a signature covers (v1 or v4), ``name`` lowercase: the plain ones above, ``x-log-*`` and
    ``x-acs-*``."""
    return name in _SIGNED_PLAIN or name.startswith(("x-log-", "x-acs-"))


def refuse_duplicate_signed_headers(headers: Mapping[str, str]) -> None:
    """Raise 400 ParameterInvalid if a signed header comes more than once.

    Why: the signature is computed over one copy and a handler may read another (with two ``x-log-hashkey``
    headers, a PutLogs signed for one key landed in the shard of the other). HTTP allows repeating a header
    only where its value is a list, and no signed SLS header is one, so a repeat is refused, never merged."""
    getall = getattr(headers, "getall", None)
    if getall is None:  # a plain dict cannot repeat a name
        return
    seen: set[str] = set()
    for name, _ in headers.items():  # items(), not keys(): multidict's keys() lists a repeated name once
        lower = name.lower()
        if lower in seen:
            if _is_signed(lower):
                raise E.ParameterInvalid(f"header {lower} is sent {len(getall(name))} times; a signed header must "
                                         f"come once")
            continue
        seen.add(lower)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:  # a plain dict with other casing (aiohttp's headers are case-insensitive already)
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


class Authenticator:
    def __init__(self, config: HubConfig) -> None:
        self._keys: dict[str, AccessKey] = config.key_table()
        self._enabled = not config.no_auth
        self._max_skew = config.max_skew

    @property
    def enabled(self) -> bool:
        return self._enabled

    @staticmethod
    def _principal(key: AccessKey) -> Principal:
        return Principal(key_id=key.key_id, projects=key.projects, read_only=key.read_only, expires=key.expires)

    def _secret(self, key_id: str) -> str | None:
        key = self._keys.get(key_id)
        return key.secret if key is not None else None

    def check(self, method: str, resource: str, query_pairs: Sequence[tuple[str, str]],
              headers: Mapping[str, str], body: bytes) -> Principal:
        """The principal that signed the request (ANONYMOUS with auth off); raises the SLS 401 errors.

        Order: a signed header sent twice is refused first (400, with auth on or off), then signature and
        time (wire.signing, constant-time, a replay older than ``max_skew`` is refused), then the key's expiry
        and security token, so an unsigned probe learns nothing about keys."""
        refuse_duplicate_signed_headers(headers)
        if not self._enabled:
            return ANONYMOUS
        key_id = verify_request(method, resource, query_pairs, headers, body, self._secret,
                                max_skew=self._max_skew)
        key = self._keys[key_id]
        self._check_token(key, _header(headers, _TOKEN_HEADER))
        return self._principal(key)

    @staticmethod
    def _check_token(key: AccessKey, sent: str | None) -> None:
        """STS-style keys: the request must carry the key's token (the SDK sends it as x-acs-security-token,
        inside the signature). Plain keys must not carry one: a token there means a misconfigured client."""
        if key.expires is not None and time.time() >= key.expires:
            if key.security_token is not None:
                raise E.SLSError(f"the security token of access key {key.key_id!r} has expired",
                                 error_code="SecurityTokenExpired", http_status=401)
            raise E.Unauthorized(f"access key {key.key_id!r} has expired")
        if key.security_token is None:
            if sent:
                raise E.Unauthorized(f"access key {key.key_id!r} is not a temporary key: send no security token")
            return
        if not sent or not hmac.compare_digest(key.security_token.encode(), sent.encode("utf-8", "surrogateescape")):
            raise E.Unauthorized("the security token you provided is invalid" if sent
                                 else f"access key {key.key_id!r} needs its security token (x-acs-security-token)")

    def login(self, key_id: str, secret: str) -> Principal | None:
        """The principal for a key id and secret typed into the web console, or None if they are wrong
        (or the key has expired). Compared in constant time, like signatures."""
        if not self._enabled:
            return ANONYMOUS
        key = self._keys.get(key_id)
        if key is None or not hmac.compare_digest(key.secret.encode(), secret.encode()):
            return None
        if key.expires is not None and time.time() >= key.expires:
            return None
        return self._principal(key)
