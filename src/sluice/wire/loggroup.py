"""LogGroup / LogGroupList codec on the protobuf runtime (upb C backend). No I/O.

The schema (proto2) is SLS's: ``LogGroupList{1: repeated LogGroup}``, ``LogGroup{1: Logs, 2: Reserved,
3: Topic, 4: Source, 5: MachineUUID, 6: LogTags}``, ``Log{1: Time uint32, 2: Contents, 4: Time_ns fixed32}``,
``Content{1: Key, 2: Value}``, ``LogTag{1: Key, 2: Value}``.

The messages are built at import time in a *private* descriptor pool under the package ``sluice.sls``: the
official SDK registers package-less ``LogGroup`` messages in the default pool, and both must coexist in one
process (tests run the SDK next to sluice). No generated ``_pb2`` file, no protoc step.

Two flavours: ``LogGroup`` (string values, what handlers want) and ``LogGroupRaw`` (bytes values: accepts
any payload; the hub validates with it so a non-UTF-8 value is stored, not refused).

A LogGroupList on the wire is a sequence of ``0x0A <varint len> <LogGroup bytes>``, so stored groups are
framed into a list without re-encoding (:func:`frame_groups`) and a list is split back into the groups'
bytes without parsing the logs (:func:`split_groups`).
"""

from __future__ import annotations

from typing import Iterable, Iterator

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from .errors import WireError

__all__ = [
    "Log",
    "LogGroup",
    "LogGroupList",
    "LogGroupRaw",
    "LogGroupListRaw",
    "frame_groups",
    "split_groups",
    "parse_group",
    "encode_varint",
]

_F = descriptor_pb2.FieldDescriptorProto


def _field(msg: descriptor_pb2.DescriptorProto, name: str, number: int, ftype: int, label: int,
           type_name: str | None = None) -> None:
    f = msg.field.add(name=name, number=number, type=ftype, label=label)
    if type_name:
        f.type_name = type_name


def _build_file(package: str, value_type: int) -> descriptor_pb2.FileDescriptorProto:
    fdp = descriptor_pb2.FileDescriptorProto(name=f"{package.replace('.', '/')}/logs.proto", package=package,
                                             syntax="proto2")
    req, opt, rep = _F.LABEL_REQUIRED, _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
    log = fdp.message_type.add(name="Log")
    _field(log, "Time", 1, _F.TYPE_UINT32, req)
    content = log.nested_type.add(name="Content")
    _field(content, "Key", 1, _F.TYPE_STRING, req)
    _field(content, "Value", 2, value_type, req)
    _field(log, "Contents", 2, _F.TYPE_MESSAGE, rep, f".{package}.Log.Content")
    _field(log, "Time_ns", 4, _F.TYPE_FIXED32, opt)
    tag = fdp.message_type.add(name="LogTag")
    _field(tag, "Key", 1, _F.TYPE_STRING, req)
    _field(tag, "Value", 2, _F.TYPE_STRING, req)
    group = fdp.message_type.add(name="LogGroup")
    _field(group, "Logs", 1, _F.TYPE_MESSAGE, rep, f".{package}.Log")
    _field(group, "Reserved", 2, _F.TYPE_STRING, opt)
    _field(group, "Topic", 3, _F.TYPE_STRING, opt)
    _field(group, "Source", 4, _F.TYPE_STRING, opt)
    _field(group, "MachineUUID", 5, _F.TYPE_STRING, opt)
    _field(group, "LogTags", 6, _F.TYPE_MESSAGE, rep, f".{package}.LogTag")
    lst = fdp.message_type.add(name="LogGroupList")
    _field(lst, "LogGroups", 1, _F.TYPE_MESSAGE, rep, f".{package}.LogGroup")
    return fdp


_pool = descriptor_pool.DescriptorPool()
_pool.Add(_build_file("sluice.sls", _F.TYPE_STRING))
_pool.Add(_build_file("sluice.sls.raw", _F.TYPE_BYTES))

Log = message_factory.GetMessageClass(_pool.FindMessageTypeByName("sluice.sls.Log"))
LogTag = message_factory.GetMessageClass(_pool.FindMessageTypeByName("sluice.sls.LogTag"))
LogGroup = message_factory.GetMessageClass(_pool.FindMessageTypeByName("sluice.sls.LogGroup"))
LogGroupList = message_factory.GetMessageClass(_pool.FindMessageTypeByName("sluice.sls.LogGroupList"))
LogGroupRaw = message_factory.GetMessageClass(_pool.FindMessageTypeByName("sluice.sls.raw.LogGroup"))
LogGroupListRaw = message_factory.GetMessageClass(_pool.FindMessageTypeByName("sluice.sls.raw.LogGroupList"))


def parse_group(data: bytes, *, raw: bool = True):  # type: ignore[no-untyped-def]
    """Parse one serialized LogGroup; malformed bytes raise ``WireError``.

    ``raw=True`` (the default) reads values as bytes, so any payload SLS would accept parses.
    """
    msg = LogGroupRaw() if raw else LogGroup()
    try:
        msg.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise WireError(f"malformed LogGroup: {exc}") from None
    return msg


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def frame_groups(groups: Iterable[bytes]) -> bytes:
    """Concatenate serialized LogGroups into a serialized LogGroupList, without parsing them."""
    parts: list[bytes] = []
    for g in groups:
        parts.append(b"\x0a")
        parts.append(encode_varint(len(g)))
        parts.append(g)
    return b"".join(parts)


def read_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise WireError("truncated or oversized varint in LogGroupList")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def split_groups(data: bytes) -> Iterator[memoryview]:
    """Yield each LogGroup's bytes (as a zero-copy view) from a serialized LogGroupList.

    Only field 1 is expected; other fields are skipped as protobuf requires.
    """
    view = memoryview(data)
    pos, end = 0, len(data)
    while pos < end:
        key, pos = read_varint(view, pos)
        wire_type = key & 7
        if wire_type == 2:
            length, pos = read_varint(view, pos)
            if pos + length > end:
                raise WireError("truncated LogGroupList")
            if key >> 3 == 1:
                yield view[pos:pos + length]
            pos += length
        elif wire_type == 0:
            _, pos = read_varint(view, pos)
        elif wire_type == 5:
            pos += 4
        elif wire_type == 1:
            pos += 8
        else:
            raise WireError(f"unexpected wire type {wire_type} in LogGroupList")
        if pos > end:
            raise WireError("truncated LogGroupList")
