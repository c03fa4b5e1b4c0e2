"""Durable state of the hub: the :class:`~.base.Store` protocol and its engine.

``open_store`` is the one place that names the engine, so nothing outside ``store/`` imports it.
"""

from __future__ import annotations

from pathlib import Path

from .base import Store

__all__ = ["Store", "open_store"]


def open_store(data_dir: str | Path, **options: object) -> Store:
    """Open (and recover) the store in ``data_dir``: SQLite + segment files (``sqlite.py``)."""
    from .sqlite import SQLiteStore

    return SQLiteStore(data_dir, **options)  # type: ignore[arg-type]
