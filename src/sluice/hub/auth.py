"""Access keys and the signature check of every request (SLS signature v1 and v4, as the SDK signs).

With ``--no-auth`` the hub accepts any request, signed or not (the signature is not checked). Otherwise
every request must be signed by one of the configured keys. A verified request yields a ``Principal``: the
key and what it may do. Everything that decides what a caller may see (the API, the web console) asks the
principal, so there is one place where access is decided.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Mapping, Sequence

from ..wire.signing import verify_request
from .config import HubConfig

__all__ = ["Authenticator", "Principal", "ANONYMOUS"]


@dataclass(frozen=True)
class Principal:
    """Who made a request. ``projects`` None means every project; ``read_only`` forbids writes."""

    key_id: str | None
    projects: frozenset[str] | None = None
    read_only: bool = False

    def can_read(self, project: str) -> bool:
        return self.projects is None or project in self.projects

    def can_write(self, project: str) -> bool:
        return not self.read_only and self.can_read(project)


ANONYMOUS = Principal(key_id=None)  # what every request is with --no-auth


class Authenticator:
    def __init__(self, config: HubConfig) -> None:
        self._keys = dict(config.access_keys)
        self._enabled = not config.no_auth
        self._max_skew = config.max_skew

    @property
    def enabled(self) -> bool:
        return self._enabled

    def _principal(self, key_id: str) -> Principal:
        return Principal(key_id=key_id)

    def check(self, method: str, resource: str, query_pairs: Sequence[tuple[str, str]],
              headers: Mapping[str, str], body: bytes) -> Principal:
        """The principal that signed the request (ANONYMOUS with auth off); raises the SLS 401 errors."""
        if not self._enabled:
            return ANONYMOUS
        key_id = verify_request(method, resource, query_pairs, headers, body, self._keys.get,
                                max_skew=self._max_skew)
        return self._principal(key_id)

    def login(self, key_id: str, secret: str) -> Principal | None:
        """The principal for a key id and secret typed into the web console, or None if they are wrong.
        Compared in constant time, like signatures."""
        if not self._enabled:
            return ANONYMOUS
        expected = self._keys.get(key_id)
        if expected is None or not hmac.compare_digest(expected.encode(), secret.encode()):
            return None
        return self._principal(key_id)
