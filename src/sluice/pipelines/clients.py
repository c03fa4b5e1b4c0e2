"""One ``AsyncClient`` per (endpoint, access key, TLS settings) for a whole job, shared by sources and
targets."""

from __future__ import annotations

from ..client import AsyncClient

__all__ = ["ClientPool"]


class ClientPool:
    def __init__(self) -> None:
        self._clients: dict[tuple[str, str, str, str | None, bool], AsyncClient] = {}

    def get(self, endpoint: str, access_key_id: str = "", access_key_secret: str = "",
            security_token: str | None = None, *, ca_bundle: str | None = None,
            tls_verify: bool = True) -> AsyncClient:
        key = (endpoint, access_key_id, access_key_secret, ca_bundle, tls_verify)
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = AsyncClient(endpoint, access_key_id, access_key_secret,
                                                      security_token=security_token, ca_bundle=ca_bundle,
                                                      tls_verify=tls_verify)
        return client

    async def aclose(self) -> None:
        for c in self._clients.values():
            await c.aclose()
        self._clients.clear()
