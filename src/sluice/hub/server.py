"""Start-up, serving and shutdown of the hub process.

Order matters: the store is opened (and recovered) before the socket is bound, so the hub never accepts a
request it cannot serve; on SIGTERM/SIGINT it stops accepting, finishes in-flight requests, then closes the
store (every acknowledged write is already committed, so a kill -9 at any point is safe too).
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from .app import Hub
from .config import HubConfig
from .store.sqlite import SQLiteStore

__all__ = ["serve", "run"]

log = logging.getLogger("sluice.hub")


async def serve(config: HubConfig, *, ready: asyncio.Event | None = None,
                stop: asyncio.Event | None = None) -> None:
    store = SQLiteStore(config.data_dir, sync_full=config.sync_full, group_quota=config.group_quota)
    hub = Hub(config, store)
    runner = web.AppRunner(hub.make_app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, reuse_address=True, backlog=1024)
    try:
        await site.start()
        log.info("hub listening on http://%s:%d (data in %s, auth %s)", config.host, config.port,
                 config.data_dir, "off" if config.no_auth else f"{len(config.access_keys)} key(s)")
        print(f"sluice hub listening on http://{config.host}:{config.port}", flush=True)
        if ready is not None:
            ready.set()
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        await stop.wait()
        log.info("hub stopping")
    finally:
        await runner.cleanup()
        store.close()


def run(config: HubConfig) -> None:
    """Serve until SIGTERM/SIGINT, on uvloop (measured ~2x less CPU per request than the default loop)."""
    import uvloop

    uvloop.run(serve(config))
