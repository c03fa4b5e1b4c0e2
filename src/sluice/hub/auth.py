"""Access keys and the signature check of every request (SLS signature v1 and v4, as the SDK signs).

With ``--no-auth`` the hub accepts any request, signed or not (the signature is not checked). Otherwise
every request must be signed by one of the configured keys.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from ..wire.signing import verify_request
from .config import HubConfig

__all__ = ["Authenticator"]


class Authenticator:
    def __init__(self, config: HubConfig) -> None:
        self._keys = dict(config.access_keys)
        self._enabled = not config.no_auth
        self._max_skew = config.max_skew

    @property
    def enabled(self) -> bool:
        return self._enabled

    def check(self, method: str, resource: str, query_pairs: Sequence[tuple[str, str]],
              headers: Mapping[str, str], body: bytes) -> str | None:
        """The access key id that signed the request (None with auth off); raises the SLS 401 errors."""
        if not self._enabled:
            return None
        return verify_request(method, resource, query_pairs, headers, body, self._keys.get,
                              max_skew=self._max_skew)
