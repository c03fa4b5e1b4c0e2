"""How every sluice process logs: one line per event, to stderr, with a level and the logger's name.

``text`` (the default) is for people: ``2026-11-23 10:00:00,123 WARNING sluice.consumer: demo/web group
g: shard 3: ...``. ``json`` is for log shippers: one JSON object per line (``time`` in RFC 3339 UTC,
``level``, ``logger``, ``message``, ``pid``, and ``exception`` as one string when there is one), so a
traceback never spans lines a collector would split. The logstore and shard an event concerns are in its
message, which every sluice component starts with ``project/logstore`` (and ``shard N``) for that reason.
"""

from __future__ import annotations

import json
import logging
import sys
import time

__all__ = ["setup_logging", "JsonFormatter"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
