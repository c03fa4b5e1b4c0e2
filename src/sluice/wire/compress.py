"""Body compression as SLS uses it. No I/O.

* ``lz4``: the raw LZ4 *block* format, no size prefix, no frame; the uncompressed size travels in the
  ``x-log-bodyrawsize`` header and is needed to decompress.
* ``zstd``: a zstd frame.
* ``deflate``: a zlib stream (``zlib.decompress`` defaults), never gzip framing. ``gzip`` is accepted as an
  alias on input because some clients label zlib streams that way.
* absent or empty: uncompressed.

Decompression is bounded by the declared size (and a caller-supplied ceiling), so a small hostile body
cannot expand into gigabytes.
"""

from __future__ import annotations

import zlib
from typing import Final

import lz4.block
import zstandard

from .errors import InvalidCompressType, PostBodyUncompressError, PostBodyTooLarge

__all__ = ["COMPRESS_TYPES", "compress", "decompress", "choose_encoding"]

COMPRESS_TYPES: Final = ("lz4", "zstd", "deflate")

_zstd_compressor = zstandard.ZstdCompressor(level=1)


def compress(data: bytes, compress_type: str) -> bytes:
    """Compress ``data`` for the wire; ``compress_type`` "" means identity."""
    if not compress_type:
        return data
    if compress_type == "lz4":
        # acceleration 4: ~1.5x faster than the default on log text, at the same ratio (bench/hub.py)
        return lz4.block.compress(data, store_size=False, mode="fast", acceleration=4)
    if compress_type == "zstd":
        return _zstd_compressor.compress(data)
    if compress_type in ("deflate", "gzip"):
        return zlib.compress(data, 1)
    raise InvalidCompressType(f"compress type {compress_type!r} is not supported; use lz4, zstd or deflate")


def decompress(body: bytes, compress_type: str | None, raw_size: int | None, *, limit: int) -> bytes:
    """Decompress a request or response body.

    ``raw_size`` is the declared uncompressed size (required for lz4, checked for the others when given);
    the result may not exceed ``limit`` bytes (PostBodyTooLarge).
    """
    ctype = (compress_type or "").strip().lower()
    if not ctype:
        if len(body) > limit:
            raise PostBodyTooLarge(f"body of {len(body)} bytes exceeds the limit of {limit} bytes")
        return body
    if raw_size is not None and raw_size > limit:
        raise PostBodyTooLarge(f"uncompressed body of {raw_size} bytes exceeds the limit of {limit} bytes")
    if ctype == "lz4":
        if raw_size is None or raw_size < 0:
            raise PostBodyUncompressError("lz4 body needs a valid x-log-bodyrawsize header")
        if raw_size == 0:
            return b""
        try:
            out = lz4.block.decompress(body, uncompressed_size=raw_size)
        except lz4.block.LZ4BlockError as exc:
            raise PostBodyUncompressError(f"lz4 body could not be decompressed: {exc}") from None
    elif ctype == "zstd":
        out = _zstd_bounded(body, limit)
    elif ctype in ("deflate", "gzip"):
        d = zlib.decompressobj()
        try:
            out = d.decompress(body, limit + 1)
        except zlib.error as exc:
            raise PostBodyUncompressError(f"deflate body could not be decompressed: {exc}") from None
        if len(out) > limit:
            raise PostBodyTooLarge(f"uncompressed body exceeds the limit of {limit} bytes")
        if not d.eof:
            raise PostBodyUncompressError("deflate body is truncated")
    else:
        raise InvalidCompressType(f"x-log-compresstype {compress_type!r} is not supported; use lz4, zstd or deflate")
    if raw_size is not None and raw_size != len(out) and ctype != "lz4":
        # zstd/deflate carry their own length; a mismatch means a corrupt or lying request.
        raise PostBodyUncompressError(
            f"x-log-bodyrawsize {raw_size} does not match the decompressed size {len(out)}"
        )
    return out


def _zstd_bounded(body: bytes, limit: int) -> bytes:
    """Decompress one zstd frame without ever allocating more than ``limit`` bytes: a 32 kB frame can
    declare (or, without a declared size, expand to) gigabytes."""
    try:
        declared = zstandard.frame_content_size(body)
    except zstandard.ZstdError as exc:
        raise PostBodyUncompressError(f"zstd body could not be decompressed: {exc}") from None
    if declared > limit:
        raise PostBodyTooLarge(f"uncompressed body of {declared} bytes exceeds the limit of {limit} bytes")
    try:
        # with a declared size the output buffer is exactly that; without one it is capped at the limit
        return zstandard.ZstdDecompressor().decompress(body, max_output_size=0 if declared >= 0 else limit)
    except zstandard.ZstdError as exc:
        hint = "" if declared >= 0 else f" (corrupt, truncated, or larger than the limit of {limit} bytes)"
        raise PostBodyUncompressError(f"zstd body could not be decompressed{hint}: {exc}") from None


def choose_encoding(accept_encoding: str | None) -> str:
    """The compression for a PullLogs response: the first of lz4/zstd/deflate the client lists, else identity."""
    if not accept_encoding:
        return ""
    for token in accept_encoding.split(","):
        name = token.split(";", 1)[0].strip().lower()
        if name in COMPRESS_TYPES:
            return name
    return ""
