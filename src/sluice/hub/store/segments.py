"""Append-only segment files holding the LogGroup bytes of each shard, compressed, checksummed.

Why files and not SQLite blobs: a blob in SQLite's WAL is written twice (WAL, then checkpoint into the
database) and read through page-sized overflow chains; at ~1 MB per PutLogs that was the largest cost of
ingest (bench/hub.py, docs/storage.md). Here each byte is written once with ``os.write`` and read with one
``os.pread`` per run of groups. SQLite keeps the *index* (row per group: segment, offset, length, receive
time), and the index is the truth: data is written before its index row commits, so a committed row
always points at written bytes.

Layout: ``<root>/<shard uid>/<first seq, 20 digits>.sg2``; a new segment starts once the current one
passes ``segment_bytes``, so retention deletes whole files. Each record (one LogGroup) is a 32-byte header
(magic, codec, raw length, stored length, CRC-32 of header and payload, sequence number, transaction
number) and the payload: the group compressed with lz4 (usually the client's own PutLogs body, stored as it
came: no compression work on ingest), zstd (likewise), or raw when compression does not pay. The CRC lets
reads and ``sluice hub --check`` refuse damaged bytes instead of serving them; the transaction number is
what lets recovery *prove* that bytes past the index's end belong to a transaction that never committed
(``plan_shard``). Files of the first format (``.seg``: raw groups framed as LogGroupList elements) are
still read; they are never appended to again.

Descriptors: write descriptors are kept in an LRU of ``max_open`` (the hub works with any number of
shards under a fixed descriptor budget); reads open the file per call (a few per PullLogs) because a
shared descriptor could be closed and its number reused by retention between lookup and read.
"""

from __future__ import annotations

import errno
import os
import shutil
import struct
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import lz4.block
import zstandard

from ...wire.loggroup import encode_varint

try:  # the lz4 PullLogs body made from stored records without recompressing (_lz4stitch.c); optional
    from ._lz4stitch import stitch as _stitch
except ImportError:  # not compiled here: PullLogs decompresses and compresses again (same bytes decoded)
    _stitch = None

__all__ = [
    "SegmentFiles", "SegmentDamaged", "ShardPlan", "DEFAULT_SEGMENT_BYTES", "DEFAULT_MAX_OPEN",
    "CODEC_NONE", "CODEC_LZ4", "CODEC_ZSTD", "RESOURCE_ERRNOS", "read_run", "stitch_lz4",
]

DEFAULT_SEGMENT_BYTES = 64 << 20
DEFAULT_MAX_OPEN = 128  # write descriptors kept open (LRU); well under the common `ulimit -n 1024`

V1_SUFFIX = ".seg"  # first format: raw groups framed as LogGroupList elements; read-only now
V2_SUFFIX = ".sg2"

CODEC_NONE, CODEC_LZ4, CODEC_ZSTD = 0, 1, 2
_CODEC_NAMES = {"lz4": CODEC_LZ4, "zstd": CODEC_ZSTD}

_MAGIC = 0xB7
_HDR = struct.Struct("<IBBHIIQQ")  # crc, magic, codec, reserved, raw_len, stored_len, seq, txn
_REST = struct.Struct("<BBHIIQQ")  # the header after its crc, which covers it and the payload (one crc32 call)
_CRC = struct.Struct("<I")
HEADER_BYTES = _HDR.size  # 32
_FRAMES = [b"\x0a" + encode_varint(n) for n in range(128)]  # LogGroupList frame headers of small groups

# The OS refusing a resource: answered ServerBusy (retry later), never a 500.
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS, errno.EAGAIN})

_zstd_d = zstandard.ZstdDecompressor()


class SegmentDamaged(Exception):
    """Bytes a committed index row points at are missing or do not check out. Never served."""

    def __init__(self, path: Path | str, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.path = Path(path)
        self.detail = detail


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def encode_record(raw: bytes, seq: int, txn: int, packed: tuple[str, bytes] | None = None) -> tuple[bytes, bytes]:
    """(header, payload) of one group. ``packed`` is the client's compressed body for exactly ``raw``
    (codec name, bytes): stored as is when it saves space. Otherwise lz4 on the raw bytes."""
    codec, payload = CODEC_NONE, raw
    if packed is not None and packed[0] in _CODEC_NAMES and len(packed[1]) < len(raw):
        codec, payload = _CODEC_NAMES[packed[0]], packed[1]
    else:
        squeezed = lz4.block.compress(raw, store_size=False)
        if len(squeezed) < len(raw):
            codec, payload = CODEC_LZ4, squeezed
    rest = _REST.pack(_MAGIC, codec, 0, len(raw), len(payload), seq, txn)
    return _CRC.pack(zlib.crc32(payload, zlib.crc32(rest))) + rest, payload


@dataclass
class Record:
    """One parsed v2 record header."""
    codec: int
    raw_len: int
    stored_len: int
    crc: int
    seq: int
    txn: int


def parse_header(buf: bytes | memoryview, at: int = 0) -> Record | None:
    """The header at ``at``, or None when the bytes there are not one (bad magic or codec, short)."""
    if len(buf) - at < HEADER_BYTES:
        return None
    crc, magic, codec, reserved, raw_len, stored_len, seq, txn = _HDR.unpack_from(buf, at)
    if magic != _MAGIC or codec not in (CODEC_NONE, CODEC_LZ4, CODEC_ZSTD) or reserved:
        return None
    return Record(codec, raw_len, stored_len, crc, seq, txn)


def decode_records(buf: bytes, where: Path | str) -> list[bytes | memoryview]:
    """The LogGroupList-framed groups (0x0A, varint length, group) of a run of v2 records, as chunks to join,
    each record checked (magic, CRC, decompressed length). Damage raises ``SegmentDamaged``: never serve
    garbage or zeros. Per record: one unpack, one crc32, one decompression (none for raw records)."""
    out: list[bytes | memoryview] = []
    view = memoryview(buf)
    unpack = _HDR.unpack_from
    crc32 = zlib.crc32
    pos, n = 0, len(buf)
    while pos < n:
        if n - pos < HEADER_BYTES:
            raise SegmentDamaged(where, f"a record header cut short at offset +{pos} of the run read")
        crc, magic, codec, reserved, raw_len, stored_len, seq, _txn = unpack(buf, pos)
        end = pos + HEADER_BYTES + stored_len
        if magic != _MAGIC or codec > CODEC_ZSTD or reserved or end > n:
            raise SegmentDamaged(where, f"no valid record at offset +{pos} of the run read")
        if crc32(view[pos + 4:end]) != crc:
            raise SegmentDamaged(where, f"checksum mismatch in the record of group {seq}")
        payload = view[pos + HEADER_BYTES:end]
        try:
            if codec == CODEC_LZ4:
                raw: bytes | memoryview = lz4.block.decompress(payload, uncompressed_size=raw_len)
            elif codec == CODEC_ZSTD:
                raw = _zstd_d.decompress(payload, max_output_size=raw_len)
            else:
                raw = payload
        except (lz4.block.LZ4BlockError, zstandard.ZstdError) as exc:
            raise SegmentDamaged(where, f"record of group {seq} does not decompress: {exc}") from None
        if len(raw) != raw_len:
            raise SegmentDamaged(where, f"record of group {seq} decompressed to the wrong length")
        out.append(_FRAMES[raw_len] if raw_len < 128 else b"\x0a" + encode_varint(raw_len))
        out.append(raw)
        pos = end
    return out


def read_run(root: Path, uid: int, base: int, offset: int, length: int) -> list[bytes]:
    """The LogGroupList-framed bytes of the run of records at [offset, offset+length) of a segment, as
    chunks to join. One pread; damage raises ``SegmentDamaged``; a segment retention removed raises
    FileNotFoundError."""
    d = root / str(uid)
    v2 = True
    try:
        fd = os.open(d / f"{base:020d}{V2_SUFFIX}", os.O_RDONLY)
    except FileNotFoundError:
        v2 = False
        fd = os.open(d / f"{base:020d}{V1_SUFFIX}", os.O_RDONLY)
    try:
        buf = os.pread(fd, length, offset)
    finally:
        os.close(fd)
    path = d / f"{base:020d}{V2_SUFFIX if v2 else V1_SUFFIX}"
    if len(buf) != length:
        raise SegmentDamaged(path, f"{length} bytes indexed at offset {offset}, only {len(buf)} there")
    if not v2:
        if buf[:1] != b"\x0a":
            raise SegmentDamaged(path, f"no group frame at offset {offset}")
        return [buf]
    return decode_records(buf, path)


def read_stored(root: Path, uid: int, base: int, offset: int, length: int) -> bytes | None:
    """The stored bytes of a run of v2 records, unchecked (``stitch_lz4`` checks them); None for a segment of
    the first format. A segment retention removed raises FileNotFoundError."""
    try:
        fd = os.open(root / str(uid) / f"{base:020d}{V2_SUFFIX}", os.O_RDONLY)
    except FileNotFoundError:
        if (root / str(uid) / f"{base:020d}{V1_SUFFIX}").exists():
            return None
        raise
    try:
        buf = os.pread(fd, length, offset)
    finally:
        os.close(fd)
    return buf if len(buf) == length else None


def stitch_lz4(runs: list[bytes]) -> tuple[bytes, int, int] | None:
    """(one lz4 block of the runs' groups as a LogGroupList, its raw size, the number of groups), made from
    the stored lz4 records without decompressing them (``_lz4stitch.c``: each record's CRC and lz4 structure
    checked, its sequences copied). None when that cannot be done (the extension not compiled, a zstd record,
    any damage): the caller then reads the usual way (``read_run``), which reports damage."""
    if _stitch is None:
        return None
    try:
        return _stitch(runs)  # type: ignore[no-any-return]
    except (ValueError, LookupError):
        return None


class _Segment:
    __slots__ = ("uid", "base", "path", "size", "wfd", "v2")

    def __init__(self, uid: int, base: int, path: Path, size: int, v2: bool) -> None:
        self.uid = uid
        self.base = base
        self.path = path
        self.size = size
        self.wfd: int | None = None
        self.v2 = v2


@dataclass
class ShardPlan:
    """What recovery would do to one shard's files (``actions``: provably safe) and what it cannot fix
    (``problems``: the hub refuses to start; ``sluice hub --check`` lists them)."""
    uid: int
    actions: list[tuple[str, Path, int]] = field(default_factory=list)  # ("trim", path, size) | ("delete", path, 0)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    segments: list[tuple[int, Path, int, bool]] = field(default_factory=list)  # kept: base, path, size, v2


def _segment_files(d: Path, sizes: dict[Path, int] | None = None) -> list[tuple[int, Path, bool]]:
    """(base, path, is v2) of a shard's segment files, in order; ``sizes`` gets each file's size (one scandir,
    no path objects per stat: at 20,000 shards recovery's file walk was most of the start-up time)."""
    out = []
    try:
        entries = list(os.scandir(d))
    except (FileNotFoundError, NotADirectoryError):
        return out
    for e in entries:
        stem, dot, ext = e.name.partition(".")
        if dot and stem.isdigit() and ext in ("seg", "sg2"):
            path = d / e.name
            out.append((int(stem), path, ext == "sg2"))
            if sizes is not None:
                sizes[path] = e.stat().st_size
    out.sort(key=lambda t: (t[0], t[2]))
    return out


def _walk(path: Path, start: int, size: int) -> tuple[list[Record], bool]:
    """Headers of the v2 records from ``start`` to ``size``; the flag says whether the bytes ended on a
    record boundary (False: a record cut short, or bytes that are not a record at all)."""
    recs: list[Record] = []
    with open(path, "rb") as fh:
        pos = start
        while pos < size:
            fh.seek(pos)
            rec = parse_header(fh.read(HEADER_BYTES))
            if rec is None:
                return recs, False
            recs.append(rec)
            pos += HEADER_BYTES + rec.stored_len
        return recs, pos == size


def plan_shard(root: Path, uid: int, live: dict[int, int], begin_seq: int, committed_txn: int,
               legacy: bool) -> ShardPlan:
    """Compare a shard's files with its index: ``live`` = {segment base: end offset of its last indexed
    group}, ``begin_seq`` the oldest kept group, ``committed_txn`` the last transaction the index holds.

    Only what can be proven unacknowledged or expired is cut: bytes past the index's end whose every record
    belongs to a transaction after ``committed_txn`` (a batch that never committed), and files whose every
    group is before ``begin_seq`` (retention committed, the unlink did not happen). ``legacy`` (a data
    directory written before records carried transaction numbers) keeps the old rule for ``.seg`` files:
    their tails are cut, with a note. A ``.sg2`` file in a legacy directory cannot be explained (only this
    version writes them, and it records transaction numbers): any of its bytes the index does not cover is
    a problem."""
    plan = ShardPlan(uid)
    sizes: dict[Path, int] = {}
    files = _segment_files(root / str(uid), sizes)
    bases = [b for b, _, _ in files]
    for i, (base, path, v2) in enumerate(files):
        size = sizes[path]
        nxt = bases[i + 1] if i + 1 < len(files) else None
        if base not in live:
            if nxt is not None and nxt <= begin_seq:
                plan.actions.append(("delete", path, 0))
                plan.notes.append(f"{path}: every group in it expired (retention's unlink did not happen)")
                continue
            if v2 and legacy and size:
                plan.problems.append(f"{path}: a segment the index does not mention, and the directory has "
                                     f"no transaction record (hub.txn) to tell whether it was committed")
                continue
            if v2:
                recs, whole = _walk(path, 0, size)
                if recs and recs[-1].seq < begin_seq and whole:
                    plan.actions.append(("delete", path, 0))
                    plan.notes.append(f"{path}: every group in it expired (retention's unlink did not happen)")
                    continue
                if all(r.txn > committed_txn for r in recs):
                    plan.actions.append(("delete", path, 0))
                    plan.notes.append(f"{path}: {size} bytes of a transaction that never committed")
                    continue
                committed = [r for r in recs if r.txn <= committed_txn]
                plan.problems.append(
                    f"{path}: holds {len(committed)} group(s) of committed transactions (up to "
                    f"{max(r.txn for r in committed)}) that the index does not list: the index lost them")
            elif legacy or size == 0:
                plan.actions.append(("delete", path, 0))
                plan.notes.append(f"{path}: a segment the index does not mention (first format: deleted as "
                                  f"before)")
            else:
                plan.problems.append(f"{path}: a segment the index does not mention")
            continue
        end = live[base]
        if size < end:
            plan.problems.append(f"{path}: is {size} bytes but the index has groups up to byte {end}: the file "
                                 f"was truncated or replaced outside the hub")
            continue
        if size > end:
            if v2 and legacy:
                plan.problems.append(f"{path}: {size - end} bytes past the last indexed group, and the directory "
                                     f"has no transaction record (hub.txn) to tell whether they were committed")
                continue
            if v2:
                recs, _whole = _walk(path, end, size)
                if all(r.txn > committed_txn for r in recs):
                    plan.actions.append(("trim", path, end))
                    plan.notes.append(f"{path}: {size - end} bytes past the last indexed group belong to a "
                                      f"transaction that never committed")
                else:
                    plan.problems.append(
                        f"{path}: {size - end} bytes past the last indexed group belong to committed "
                        f"transactions: the index lost rows")
                    continue
            elif legacy:
                plan.actions.append(("trim", path, end))
                plan.notes.append(f"{path}: {size - end} unindexed bytes cut (first format)")
            else:
                plan.problems.append(f"{path}: {size - end} bytes past the last indexed group (first-format "
                                     f"file, never appended to by this version)")
                continue
        plan.segments.append((base, path, end, v2))
    for base in live:
        if base not in set(bases):
            plan.problems.append(f"{root / str(uid)}/{base:020d}{V2_SUFFIX}: the index lists groups in this "
                                 f"segment but the file is missing")
    return plan


class SegmentFiles:
    """The files of every shard. Appends come from the store's single writer thread; reads from any thread."""

    def __init__(self, root: Path, *, segment_bytes: int = DEFAULT_SEGMENT_BYTES,
                 max_open: int = DEFAULT_MAX_OPEN) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self.max_open = max(1, max_open)
        self._segments: dict[int, list[_Segment]] = {}
        self._open: OrderedDict[int, _Segment] = OrderedDict()  # id(segment) -> segment, least recent first
        self._journal: dict[int, tuple[int, int]] = {}
        self._written: set[_Segment] = set()  # segments the current batch wrote (``sync``)
        self.txn = 0  # transaction number written into new records (set by the store per batch)

    # ------------------------------------------------------------------ recovery
    def adopt(self, plan: ShardPlan) -> None:
        """Apply a plan without problems and keep its segments (``plan_shard``)."""
        for kind, path, size in plan.actions:
            if kind == "delete":
                path.unlink(missing_ok=True)
            else:
                with open(path, "r+b") as fh:
                    fh.truncate(size)
        self._segments[plan.uid] = [_Segment(plan.uid, b, p, s, v2) for b, p, s, v2 in plan.segments]

    def shard_dirs(self) -> list[int]:
        return [int(d.name) for d in self.root.iterdir() if d.is_dir() and d.name.isdigit()]

    def remove_dir(self, uid: int) -> None:
        shutil.rmtree(self.root / str(uid), ignore_errors=True)

    # ------------------------------------------------------------------ writing (writer thread only)
    def _fd(self, seg: _Segment) -> int:
        key = id(seg)
        if seg.wfd is not None:
            self._open.move_to_end(key)
            return seg.wfd
        while len(self._open) >= self.max_open:
            self._close(next(iter(self._open.values())))
        try:
            fd = os.open(seg.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE) or not self._open:
                raise
            for s in list(self._open.values())[: max(1, len(self._open) // 2)]:  # give some back, once
                self._close(s)
            fd = os.open(seg.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        seg.wfd = fd
        self._open[key] = seg
        return fd

    def append(self, uid: int, seq: int, data: bytes,
               packed: tuple[str, bytes] | None = None) -> tuple[int, int, int]:
        """Write ``data`` as group ``seq`` of shard ``uid``; returns (segment base, offset, length) of its
        record."""
        segs = self._segments.setdefault(uid, [])
        if uid not in self._journal:
            self._journal[uid] = (len(segs), segs[-1].size if segs else 0)
        if not segs or not segs[-1].v2 or segs[-1].size >= self.segment_bytes:
            d = self.root / str(uid)
            d.mkdir(parents=True, exist_ok=True)
            segs.append(_Segment(uid, seq, d / f"{seq:020d}{V2_SUFFIX}", 0, True))
        seg = segs[-1]
        fd = self._fd(seg)
        self._written.add(seg)
        offset = seg.size
        header, payload = encode_record(data, seq, self.txn, packed)
        written = os.writev(fd, [header, payload])
        total = len(header) + len(payload)
        if written < total:  # a short write (signal, nearly full disk): finish it or fail the batch
            rest = memoryview(header + bytes(payload))[written:]
            while rest:
                n = os.write(fd, rest)
                rest = rest[n:]
        seg.size += total
        return seg.base, offset, total

    def mark(self) -> dict[int, tuple[int, int]]:
        """Start a batch: (segment count, size of the last) of each shard the batch appends to is noted at
        its first append, so ``rollback`` costs what the batch touched, not the number of shards."""
        self._journal = {}
        self._written = set()
        return self._journal

    def rollback(self, mark: dict[int, tuple[int, int]]) -> None:
        for uid, (count, size) in mark.items():
            segs = self._segments.get(uid, [])
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
        for seg in self._written:  # every segment the batch wrote, even one the LRU closed since
            if seg.uid not in uids:
                continue
            if seg.wfd is not None:
                os.fsync(seg.wfd)
            else:
                fd = os.open(seg.path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)

    # ------------------------------------------------------------------ reading (any thread)
    def read(self, uid: int, base: int, offset: int, length: int) -> list[bytes]:
        """See ``read_run``."""
        return read_run(self.root, uid, base, offset, length)

    def read_stored(self, uid: int, base: int, offset: int, length: int) -> bytes | None:
        """See ``read_stored``."""
        return read_stored(self.root, uid, base, offset, length)

    # ------------------------------------------------------------------ deleting
    def drop_before(self, uid: int, seq: int, everything: bool = False) -> int:
        """Delete whole segments whose every group is before ``seq`` (``everything``: the shard holds no
        group at all any more, so its last segment goes too); returns bytes freed."""
        segs = self._segments.get(uid, [])
        freed = 0
        while segs and ((len(segs) > 1 and segs[1].base <= seq) or (everything and len(segs) == 1)):
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
            self._open.pop(id(seg), None)
            os.close(seg.wfd)
            seg.wfd = None

    def open_count(self) -> int:
        return len(self._open)

    def close(self) -> None:
        for segs in self._segments.values():
            for seg in segs:
                self._close(seg)
