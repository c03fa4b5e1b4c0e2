"""The SLS API client: ``AsyncClient`` (the implementation) and ``Client`` (a blocking facade)."""

from ._async import AsyncClient, ClientConfig, PullResult, build_log_group
from ._sync import Client
from ._transport import RetryPolicy

__all__ = ["AsyncClient", "Client", "ClientConfig", "PullResult", "RetryPolicy", "build_log_group"]
