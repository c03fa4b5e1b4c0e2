"""Graceful stop on SIGINT/SIGTERM, shared by the long-running commands (``sluice hub``, ``sluice run``).

Not part of any layer: it knows only asyncio and signals, and both the hub and the pipelines runner use it.
"""

from __future__ import annotations

import asyncio
import signal

__all__ = ["stop_on_signals"]


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set ``stop`` on SIGINT or SIGTERM, on the running loop. Install it before announcing readiness, so a
    signal right after start is a graceful stop, never the default handler's abrupt exit. Where a loop cannot
    take signal handlers (a thread other than the main one, Windows) this does nothing."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
