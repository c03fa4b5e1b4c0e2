"""Append-only segment files holding the LogGroup bytes of each shard.

Why files and not SQLite blobs: a blob in SQLite's WAL is written twice (WAL, then checkpoint into the
database) and read through page-sized overflow chains; at ~1 MB per PutLogs that was the largest cost of
ingest (bench/hub.py, docs/storage.md). Here each byte is written once with ``os.write`` and read with one
``os.pread`` per run of groups. SQLite keeps the *index* (row per group: segment, offset, length, receive
time), and the index is the truth: data is written before its index row commits, so a committed row
always points at written bytes, and bytes past the last committed row are garbage that recovery cuts off.

Layout: ``<root>/<shard uid>/<first seq, 20 digits>.seg``; a new segment starts once the current one
passes ``segment_bytes``, so retention deletes whole files.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ...wire.loggroup import encode_varint

__all__ = ["SegmentFiles", "DEFAULT_SEGMENT_BYTES"]

DEFAULT_SEGMENT_BYTES = 64 << 20


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


class _Segment:
    __slots__ = ("base", "path", "size", "wfd")

    def __init__(self, base: int, path: Path, size: int) -> None:
        self.base = base
        self.path = path
        self.size = size
        self.wfd: int | None = None


class SegmentFiles:
    """The files of every shard. Appends come from the store's single writer thread; reads from any thread."""

    def __init__(self, root: Path, *, segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self._segments: dict[int, list[_Segment]] = {}

    # ------------------------------------------------------------------ recovery
    def recover(self, uid: int, live: dict[int, int]) -> None:
        """Open a shard's segments, given ``live`` = {segment base: end offset of its last committed group}.
        Bytes past that end (an append whose index never committed) are truncated; segments the index
        does not mention at all are deleted."""
        d = self.root / str(uid)
        segs: list[_Segment] = []
        if d.is_dir():
            for f in sorted(d.glob("*.seg")):
                base = int(f.stem)
                if base not in live:
                    f.unlink()
                    continue
                end = live[base]
                if f.stat().st_size != end:
                    with open(f, "r+b") as fh:
                        fh.truncate(end)
                segs.append(_Segment(base, f, end))
        self._segments[uid] = segs

    def forget_unknown(self, known: set[int]) -> None:
        """Delete directories of shards that no longer exist (a delete whose files outlived its commit)."""
        for d in self.root.iterdir():
            if d.is_dir() and d.name.isdigit() and int(d.name) not in known:
                shutil.rmtree(d, ignore_errors=True)

    # ------------------------------------------------------------------ writing (writer thread only)
    def append(self, uid: int, seq: int, data: bytes) -> tuple[int, int, int]:
        """Write ``data`` as group ``seq`` of shard ``uid``; returns (segment base, offset, length) of its
        record."""
        segs = self._segments.setdefault(uid, [])
        if not segs or segs[-1].size >= self.segment_bytes:
            d = self.root / str(uid)
            d.mkdir(parents=True, exist_ok=True)
            seg = _Segment(seq, d / f"{seq:020d}.seg", 0)
            segs.append(seg)
        seg = segs[-1]
        if seg.wfd is None:
            seg.wfd = os.open(seg.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        offset = seg.size
        # Stored framed, as a LogGroupList element (0x0A, varint length, group): a run of consecutive
        # records is then a valid LogGroupList body as it lies on disk, served by one pread, no re-framing.
        header = b"\x0a" + encode_varint(len(data))
        written = os.writev(seg.wfd, [header, data])
        total = len(header) + len(data)
        if written < total:  # a short write (signal, nearly full disk): finish it or fail the batch
            rest = memoryview(header + bytes(data))[written:]
            while rest:
                n = os.write(seg.wfd, rest)
                rest = rest[n:]
        seg.size += total
        return seg.base, offset, total

    def mark(self) -> dict[int, tuple[int, int]]:
        """Current (segment count, size of the last) per shard, to undo a failed batch with ``rollback``."""
        return {uid: (len(s), s[-1].size if s else 0) for uid, s in self._segments.items()}

    def rollback(self, mark: dict[int, tuple[int, int]]) -> None:
        for uid, segs in self._segments.items():
            count, size = mark.get(uid, (0, 0))
            while len(segs) > max(count, 0):
                seg = segs.pop()
                self._close(seg)
                seg.path.unlink(missing_ok=True)
            # Compare with the file, not with ``seg.size``: a write that failed half-way (ENOSPC) left
            # bytes on disk that ``seg.size`` never counted, and O_APPEND would write after them.
            if segs and (segs[-1].size != size or _file_size(segs[-1].path) != size):
                seg = segs[-1]
                self._close(seg)
                with open(seg.path, "r+b") as fh:
                    fh.truncate(size)
                seg.size = size

    def sync(self, uids: set[int]) -> None:
        """fsync the current segment of these shards (``--sync full``), before their index commits."""
        for uid in uids:
            segs = self._segments.get(uid)
            if segs and segs[-1].wfd is not None:
                os.fsync(segs[-1].wfd)

    # ------------------------------------------------------------------ reading (any thread)
    def read(self, uid: int, base: int, offset: int, length: int) -> bytes:
        """One pread. The file is opened per call (a few per PullLogs): a shared descriptor could be closed
        and its number reused by retention between lookup and read; an open file survives its unlink."""
        fd = os.open(self.root / str(uid) / f"{base:020d}.seg", os.O_RDONLY)
        try:
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ deleting
    def drop_before(self, uid: int, seq: int) -> int:
        """Delete whole segments whose every group is before ``seq``; returns bytes freed."""
        segs = self._segments.get(uid, [])
        freed = 0
        while len(segs) > 1 and segs[1].base <= seq:
            seg = segs.pop(0)
            freed += seg.size
            self._close(seg)
            seg.path.unlink(missing_ok=True)
        return freed

    def drop_shard(self, uid: int) -> None:
        for seg in self._segments.pop(uid, []):
            self._close(seg)
        shutil.rmtree(self.root / str(uid), ignore_errors=True)

    def _close(self, seg: _Segment) -> None:
        if seg.wfd is not None:
            os.close(seg.wfd)
            seg.wfd = None

    def close(self) -> None:
        for segs in self._segments.values():
            for seg in segs:
                self._close(seg)
