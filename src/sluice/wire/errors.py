"""The one error tree of sluice, shared by the hub (which raises and serializes SLS errors) and the client
(which receives them).

::

    SluiceError                      everything sluice raises
    +-- SLSError                     carries an SLS errorCode and HTTP status; one subclass per code
    |   +-- ProjectNotExist, LogStoreNotExist, ShardNotExist, InvalidCursor, PostBodyTooLarge, ...
    +-- TransportError               timeouts, refused connections (retriable)
    +-- WireError                    a body, cursor or compressed payload we could not decode
    +-- ConfigError                  invalid configuration, names the offending setting

Codes and statuses follow the SLS error table (docs/errors.md, ../reference). An unknown code received from
the cloud becomes a plain ``SLSError`` that keeps its code and status, so a client never crashes on it.
No I/O here.
"""

from __future__ import annotations

from typing import ClassVar, Iterator

__all__ = [
    "SluiceError",
    "SLSError",
    "TransportError",
    "WireError",
    "ConfigError",
    "for_code",
]


class SluiceError(Exception):
    """Root of every error sluice raises: ``except sluice.SluiceError`` catches them all."""

    retriable: ClassVar[bool] = False


class SLSError(SluiceError):
    """An error in SLS's format: ``{"errorCode": ..., "errorMessage": ...}`` with an HTTP status."""

    error_code: str = "InternalServerError"
    http_status: int = 500

    def __init__(
        self,
        message: str = "",
        *,
        request_id: str | None = None,
        error_code: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message or self.error_code)
        self.request_id = request_id
        if error_code is not None:
            self.error_code = error_code
        if http_status is not None:
            self.http_status = http_status

    @property
    def message(self) -> str:
        return str(self)

    def to_json(self) -> dict[str, str]:
        return {"errorCode": self.error_code, "errorMessage": str(self)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.error_code!r}, {str(self)!r}, status={self.http_status})"


class TransportError(SluiceError):
    """The request never got an SLS answer: connection refused or reset, timeout, DNS failure."""

    retriable = True


class WireError(SluiceError):
    """Bytes we could not decode: malformed protobuf, a corrupt compressed body, a cursor that is not one."""


class ConfigError(SluiceError):
    """Invalid configuration; the message names the setting (or YAML path) at fault."""


def _code(name: str, status: int, *, retriable: bool = False, doc: str = "") -> type[SLSError]:
    cls = type(name, (SLSError,), {"error_code": name, "http_status": status, "__doc__": doc or name})
    cls.retriable = retriable  # type: ignore[misc]
    cls.__module__ = __name__
    return cls


# --- request and header validation (400) ---
MissingContentType = _code("MissingContentType", 400)
MissingBodyRawSize = _code("MissingBodyRawSize", 400)
InvalidBodyRawSize = _code("InvalidBodyRawSize", 400)
InvalidCompressType = _code("InvalidCompressType", 400)
MissingAPIVersion = _code("MissingAPIVersion", 400)
InvalidAPIVersion = _code("InvalidAPIVersion", 400)
RequestTimeTooSkewed = _code("RequestTimeTooSkewed", 400)
ParameterInvalid = _code("ParameterInvalid", 400)
JsonInfoInvalid = _code("JsonInfoInvalid", 400)
# --- authentication (401) ---
SignatureNotMatch = _code("SignatureNotMatch", 401)
Unauthorized = _code("Unauthorized", 401)
InvalidAccessKeyId = _code("InvalidAccessKeyId", 401)
# --- missing resources ---
ProjectNotExist = _code("ProjectNotExist", 404)
LogStoreNotExist = _code("LogStoreNotExist", 404)
ConsumerGroupNotExist = _code("ConsumerGroupNotExist", 404)
ConsumerNotExist = _code("ConsumerNotExist", 404)
ShardNotExist = _code("ShardNotExist", 400, doc="400 on data APIs; checkpoint APIs use 404 (pass http_status)")
RouteNotFound = _code("RouteNotFound", 404, doc="no SLS API at this method and path")
# --- conflicts and validation ---
ProjectAlreadyExist = _code("ProjectAlreadyExist", 400)
LogStoreAlreadyExist = _code("LogStoreAlreadyExist", 400)
ConsumerGroupAlreadyExist = _code("ConsumerGroupAlreadyExist", 400)
ConsumerGroupQuotaExceed = _code("ConsumerGroupQuotaExceed", 400)
ProjectInfoInvalid = _code("ProjectInfoInvalid", 400)
LogStoreInfoInvalid = _code("LogStoreInfoInvalid", 400)
LogStoreWithoutShard = _code("LogStoreWithoutShard", 400)
InvalidCursor = _code("InvalidCursor", 400)
InvalidShardCheckPoint = _code("InvalidShardCheckPoint", 400)
ConsumerNotMatch = _code("ConsumerNotMatch", 400)
NotExistConsumerWithBody = _code("NotExistConsumerWithBody", 400)
ShardReadOnly = _code("ShardReadOnly", 400, doc="write to a readonly (split or merged) shard; status chosen by us")
# --- PutLogs validation ---
PostBodyInvalid = _code("PostBodyInvalid", 400)
PostBodyTooLarge = _code("PostBodyTooLarge", 400)
PostBodyUncompressError = _code("PostBodyUncompressError", 400)
InvalidLogSize = _code("InvalidLogSize", 400, doc="too many logs in one request; the SDK halves and retries")
InvalidTimestamp = _code("InvalidTimestamp", 400)
MissingContentLength = _code("MissingContentLength", 411)
# --- quota and throttling (403) ---
WriteQuotaExceed = _code("WriteQuotaExceed", 403, retriable=True)
ReadQuotaExceed = _code("ReadQuotaExceed", 403, retriable=True)
ProjectQuotaExceed = _code("ProjectQuotaExceed", 403)
StorageFull = _code("StorageFull", 507, doc="the hub's disk is full; nothing was written")
# --- server side ---
InternalServerError = _code("InternalServerError", 500, retriable=True)
ServerBusy = _code("ServerBusy", 503, retriable=True)
RequestTimeout = _code("RequestTimeout", 400, retriable=True)


def _iter_subclasses(cls: type[SLSError]) -> Iterator[type[SLSError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _iter_subclasses(sub)


_BY_CODE: dict[str, type[SLSError]] = {c.error_code: c for c in _iter_subclasses(SLSError)}
# Cloud SLS spells some codes two ways; accept both when decoding.
for _alias, _canonical in {
    "ConsumerNotExsit": "ConsumerNotExist",
    "ShardNotExsit": "ShardNotExist",
    "LogstoreAlreadyExist": "LogStoreAlreadyExist",
    "ProjectNotExists": "ProjectNotExist",
}.items():
    _BY_CODE[_alias] = _BY_CODE[_canonical]


def for_code(
    error_code: str, message: str, *, http_status: int | None = None, request_id: str | None = None
) -> SLSError:
    """Build the error for an errorCode received on the wire; unknown codes keep their code and status."""
    cls = _BY_CODE.get(error_code)
    if cls is None:
        return SLSError(message, error_code=error_code, http_status=http_status or 500, request_id=request_id)
    return cls(message, http_status=http_status, request_id=request_id)


def all_codes() -> dict[str, type[SLSError]]:
    """Every known code (including alias spellings) mapped to its class."""
    return dict(_BY_CODE)
