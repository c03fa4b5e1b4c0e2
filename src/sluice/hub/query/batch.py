"""Turning stored LogGroups into the indexer's insert text: pure, light (wire only), and picklable, so the
hub can run it in a helper process and keep its own interpreter lock for PutLogs and PullLogs.

The text is one string per batch: records separated by RS (0x1E), columns by US (0x1F): seq, position,
``__time__``, topic, source, tags (``k NUL v ...``), the fields line (``k NUL v ...``), then one column per
index key (0x02 when the log lacks the key). DuckDB splits it itself (engine.py). A batch whose text would be
ambiguous (a separator or NUL inside a key or value, or bytes that are not UTF-8) yields None: the caller
takes the careful path.
"""

from __future__ import annotations

from itertools import islice
from typing import Any

from ...wire.loggroup import split_groups

try:
    from ...wire._logdecode import group_logs as _group_logs
except ImportError:  # pragma: no cover
    _group_logs = None
try:  # the same text built in C straight from the stored bytes (_indexrows.c); optional like the decoders
    from ._indexrows import build_text as build_text_c
except ImportError:  # pragma: no cover - no compiler where sluice was installed
    build_text_c = None

__all__ = ["RS", "US", "build_text", "build_from_body", "build_from_body_py", "build_text_c", "decode_group",
           "exit_with_parent"]

RS, US = "\x1e", "\x1f"


def decode_group(group: bytes | memoryview) -> list[dict[str, Any]]:
    """One stored group's logs as dicts: fields, then ``__time__``, ``__topic__``, ``__source__``, then tags."""
    if _group_logs is not None:
        return _group_logs(group)
    from .spl import _decode_logs

    return _decode_logs(group)


def build_text(groups: list[tuple[int, list[dict[str, Any]]]], names: list[str]) -> tuple[str, int] | None:
    """(text, records) for groups as :func:`decode_group` returns them, or None (see the module doc)."""
    J = "\x00".join
    recs: list[str] = []
    nuls = 0
    try:
        for seq, logs in groups:
            if not logs:
                continue
            first = logs[0]
            tags = [(k[8:], v) for k, v in first.items() if k.startswith("__tag__:")]
            m = 3 + len(tags)
            mid = US.join((first.get("__topic__", ""), first.get("__source__", ""), J(map(J, tags))))
            tag_nuls = 2 * len(tags) - 1 if tags else 0
            seq_s = str(seq)
            for i, d in enumerate(logs):
                nf = len(d) - m
                nuls += (2 * nf - 1 if nf > 0 else 0) + tag_nuls
                recs.append(US.join((seq_s, str(i), str(d["__time__"]), mid, J(map(J, islice(d.items(), max(0, nf)))),
                                     *[d.get(n, "\x02") for n in names])))
    except TypeError:  # a bytes value (not UTF-8)
        return None
    text = RS.join(recs)
    if (text.count(RS) != len(recs) - 1 or text.count(US) != len(recs) * (6 + len(names))
            or text.count("\x00") != nuls):
        return None
    return text, len(recs)


def build_from_body(body: bytes | memoryview, first_seq: int, names: list[str]) -> tuple[str, int] | None:
    """:func:`build_text` straight from a LogGroupList body as the store reads it. Undecodable groups are
    skipped, as the in-process path skips them. The C builder answers the common case (the same text, a few
    percent of the CPU); what it declines (see _indexrows.c) goes through :func:`build_from_body_py`."""
    if build_text_c is not None:
        built = build_text_c(body, first_seq, names)
        if built is not None:
            return built
    return build_from_body_py(body, first_seq, names)


def build_from_body_py(body: bytes | memoryview, first_seq: int, names: list[str]) -> tuple[str, int] | None:
    """:func:`build_from_body` in Python only (the fallback, and what tests hold the C builder to)."""
    groups = []
    for k, group in enumerate(split_groups(body)):
        try:
            groups.append((first_seq + k, decode_group(group)))
        except ValueError:
            continue
    return build_text(groups, names)


def exit_with_parent(parent: int) -> None:
    """The helper process's initializer: leave as soon as the hub is gone (kill -9 included), never linger."""
    import os
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="sluice-index-helper-watch", daemon=True).start()
