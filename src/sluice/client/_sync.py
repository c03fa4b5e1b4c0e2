"""``Client``: the blocking facade over ``AsyncClient``. It owns a private event loop in one thread and
forwards each call with ``run_coroutine_threadsafe(...).result()``; it holds no logic of its own."""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from typing import Any

from ._async import AsyncClient

__all__ = ["Client"]


class Client:
    """Same methods as ``AsyncClient``, blocking. Close it (or use ``with``) to stop its loop thread."""

    def __init__(self, endpoint: str, access_key_id: str = "", access_key_secret: str = "", **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sluice-client", daemon=True)
        self._thread.start()

        async def make() -> AsyncClient:
            return AsyncClient(endpoint, access_key_id, access_key_secret, **kwargs)
        self._async = self._call(make())

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._async, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            return self._call(attr(*args, **kwargs))
        return call

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._call(self._async.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
