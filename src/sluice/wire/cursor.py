"""Cursor encoding: a cursor is standard base64 (with padding) of the decimal text of a per-shard LogGroup
sequence number, as SLS cursors look. ``cursor(i)`` addresses the i-th group of a shard; the end cursor is
"last + 1". The official SDK decodes cursors itself (it subtracts 1 to find a previous cursor's time), so
the format is part of the protocol, not an implementation detail. No I/O.
"""

from __future__ import annotations

import base64
import binascii

from .errors import InvalidCursor

__all__ = ["encode_cursor", "decode_cursor"]

# A sequence number fits in 63 bits; anything longer is garbage, and refusing it early keeps int() cheap.
_MAX_DIGITS = 19


def encode_cursor(seq: int) -> str:
    """The cursor for sequence number ``seq`` (>= 0)."""
    if seq < 0:
        raise ValueError(f"cursor sequence must be >= 0, got {seq}")
    return base64.b64encode(str(seq).encode("ascii")).decode("ascii")


def decode_cursor(cursor: str) -> int:
    """The sequence number a cursor addresses.

    Liberal in what it accepts, as the SDK sometimes sends a trailing newline and other clients drop the
    padding; anything that is not base64 of a non-negative decimal integer raises ``InvalidCursor``.
    """
    text = cursor.strip()
    if not text or len(text) > 64:
        raise InvalidCursor(f"cursor {cursor!r} is not valid")
    text += "=" * (-len(text) % 4)
    try:
        digits = base64.b64decode(text, validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursor(f"cursor {cursor!r} is not valid") from None
    if not digits.isdigit() or not digits.isascii() or len(digits) > _MAX_DIGITS:
        raise InvalidCursor(f"cursor {cursor!r} is not valid")
    return int(digits)
