"""One ``AsyncClient`` per client configuration for a whole job, shared by sources and targets.

Keyed on the whole ``ClientConfig`` (endpoint, keys, security token, TLS settings, timeouts, credentials
provider): two places that differ in anything a request depends on never share a client, and a target
whose token differs from its source's is sent with its own token."""

from __future__ import annotations

from typing import Any

from ..client import AsyncClient, ClientConfig

__all__ = ["ClientPool"]


class ClientPool:
    def __init__(self, **defaults: Any) -> None:
        """``defaults``: ClientConfig fields every client of the job gets unless a call gives them
        (e.g. ``credentials_provider`` for ``sluice run`` on rotating keys)."""
        self._clients: dict[ClientConfig, AsyncClient] = {}
        self._defaults = defaults

    def get(self, endpoint: str, access_key_id: str = "", access_key_secret: str = "",
            security_token: str | None = None, **options: Any) -> AsyncClient:
        """The client for these settings (any other ``ClientConfig`` field as a keyword)."""
        return self.get_config(ClientConfig(endpoint, access_key_id, access_key_secret, security_token,
                                            **{**self._defaults, **options}))

    def get_config(self, config: ClientConfig) -> AsyncClient:
        client = self._clients.get(config)
        if client is None:
            client = self._clients[config] = AsyncClient.from_config(config)
        return client

    async def aclose(self) -> None:
        for c in self._clients.values():
            await c.aclose()
        self._clients.clear()
