"""Start-up, serving and shutdown of the hub process.

Order matters: the store is opened (and recovered) before the socket is bound, so the hub never accepts a
request it cannot serve; on SIGTERM/SIGINT it stops accepting, finishes in-flight requests, then closes the
store (every acknowledged write is already committed, so a kill -9 at any point is safe too).

TLS (``--tls-cert``/``--tls-key``) is loaded before the store is opened, so a bad certificate stops the hub
with a clear message instead of a hub that cannot serve. Idle connections, and clients that never finish
their headers, are closed after ``idle_timeout`` (aiohttp's keep-alive timer, armed at connect).
"""

from __future__ import annotations

import asyncio
import logging
import ssl

from aiohttp import web

from .._signals import stop_on_signals
from ..wire.errors import ConfigError
from .app import Hub
from .bad_http import SLSAppRunner
from .config import HubConfig
from .limits import StalledWrites, bounded_writes
from .store import open_store

__all__ = ["serve", "run", "tls_context"]

log = logging.getLogger("sluice.hub")

LINGERING_TIME = 2.0


def tls_context(config: HubConfig) -> ssl.SSLContext | None:
    """The server's TLS context (TLS 1.2 at least, the ssl module's default ciphers), or None for http."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(config.tls_cert), str(config.tls_key))
    except FileNotFoundError as exc:
        raise ConfigError(f"--tls-cert/--tls-key: {exc.filename}: no such file") from None
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"--tls-cert {config.tls_cert} / --tls-key {config.tls_key} cannot be used: {exc} "
                          f"(expected a PEM certificate chain and its PEM private key)") from None
    return ctx


async def serve(config: HubConfig, *, ready: asyncio.Event | None = None,
                stop: asyncio.Event | None = None) -> None:
    ssl_context = tls_context(config)
    store = open_store(config.data_dir, sync_full=config.sync_full, group_quota=config.group_quota,
                       max_open_segments=config.max_open_segments)
    hub = Hub(config, store)
    # lingering_time: after answering a request whose body was not read to its end (too large, ServerBusy,
    # too slow), aiohttp reads and discards the rest for this long so the client can see the answer; its
    # default of 10 s would let a stalled client hold the connection that much longer.
    app = hub.make_app()
    app.middlewares.append(bounded_writes())  # slow readers: bytes queued per connection (limits.py)
    runner = SLSAppRunner(app, access_log=None, handle_signals=False,
                          keepalive_timeout=config.idle_timeout, lingering_time=LINGERING_TIME)
    await runner.setup()
    # the write timeout: a client that takes none of its queued bytes for idle_timeout is cut off (limits.py)
    stalled = StalledWrites(lambda: runner.server.connections if runner.server else (), config.idle_timeout)
    stalled.start()
    site = web.TCPSite(runner, config.host, config.port, reuse_address=True, backlog=1024, ssl_context=ssl_context)
    scheme = "https" if ssl_context else "http"
    # Signals are handled before the hub says it is ready, so a SIGTERM right after "listening" is a
    # graceful stop, never the default handler's abrupt exit.
    stop = stop or asyncio.Event()
    stop_on_signals(stop)
    try:
        await site.start()
        log.info("hub listening on %s://%s:%d (data in %s, auth %s)", scheme, config.host, config.port,
                 config.data_dir, "off" if config.no_auth else f"{len(config.key_table())} key(s)")
        print(f"sluice hub listening on {scheme}://{config.host}:{config.port}", flush=True)
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("hub stopping")
    finally:
        await stalled.stop()
        await runner.cleanup()
        store.close()


def run(config: HubConfig) -> None:
    """Serve until SIGTERM/SIGINT, on uvloop (measured ~2x less CPU per request than the default loop)."""
    import uvloop

    uvloop.run(serve(config))
