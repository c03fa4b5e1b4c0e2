"""Syslog sink: RFC 5424/3164 messages over UDP, TCP or TLS (formatting is in ``syslog_format``).

Acknowledgement, which is what moves checkpoints:

* TCP and TLS: a piece counts as delivered once every byte of it has been accepted by the receiver's TCP:
  written out of our buffers (asyncio's and, for TLS, the SSL layer's) and no longer in the kernel's
  unacknowledged send queue (``TIOCOUTQ``). This is stronger than "write() returned": a receiver that
  dies with our bytes still in flight gets them again from the next connection. For TLS the counts mix
  plaintext and ciphertext; the estimate errs on the side of "not yet delivered". There is no
  application-level ack in syslog, so a receiver that crashes after its TCP accepted a message may lose
  it: that is the protocol's limit, not ours.
* On a broken connection (reset, closed by the receiver, refused) the sink reconnects with back-off
  (0.5 s doubling to 30 s) and first sends again everything not yet delivered, then goes on. The job
  keeps its place meanwhile; duplicates are possible, losses are not (at-least-once).
* UDP has no acknowledgement at all: a datagram counts as delivered when it is handed to the kernel, so
  UDP is at-most-once on the wire (a receiver that is down or overrun loses messages silently). Use TCP or
  TLS where that matters.
"""

from __future__ import annotations

import asyncio
import collections
import fcntl
import logging
import ssl
import struct
import termios
from typing import Any

from ...wire.batch import Batch
from ...wire.errors import ConfigError
from ..config import Syslog
from .events import FieldSelection, group_meta, log_events
from .sink import Piece, Sink
from .syslog_format import SyslogFormatter

__all__ = ["SyslogSink"]

log = logging.getLogger("sluice.pipelines.forward")

_PIECE_BYTES = 256 << 10
_WRITE_BYTES = 1 << 20  # written per round before waiting for the transport to drain
_ACK_POLL = 0.02  # how often unacknowledged bytes are looked at while nothing new is written
_MAX_DELAY = 30.0


def _unacked_in_kernel(sock: Any) -> int:
    """Bytes in the socket's send queue not yet acknowledged by the peer (Linux ``TIOCOUTQ``)."""
    try:
        return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0])
    except (OSError, AttributeError, ValueError):
        return 0


def client_ssl_context(config: Syslog) -> ssl.SSLContext:
    """The TLS client context: verify against the system CAs, a CA bundle, or not at all; optional client
    certificate. A bad file is a ConfigError (raised at check time, not on the first connection)."""
    try:
        ctx = ssl.create_default_context(cafile=config.tls_verify if isinstance(config.tls_verify, str) else None)
        if config.tls_verify is False:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if config.tls_cert and config.tls_key:
            ctx.load_cert_chain(config.tls_cert, config.tls_key)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"forward.syslog: TLS files cannot be used: {exc}") from None
    return ctx


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.last_error: Exception | None = None

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable and the like
        self.last_error = exc


class SyslogSink(Sink):
    kind = "syslog"

    def __init__(self, config: Syslog, selection: FieldSelection) -> None:
        super().__init__(f"syslog {config.protocol}://{config.host}:{config.effective_port}", config.max_buffer_bytes)
        self.config = config
        self.selection = selection
        self.formatter = SyslogFormatter(config)
        self._ssl = client_ssl_context(config) if config.protocol == "tls" else None
        self._inflight: collections.deque[Piece] = collections.deque()  # written, not yet acknowledged
        self._sent = 0  # bytes written on the current connection
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ encoding (pure, hot path)
    def encode(self, batch: Batch) -> list[Piece]:
        if self.config.protocol == "udp":
            return self._encode_datagrams(batch)
        fmt, sel = self.formatter, self.selection
        framed = fmt.framed_text
        pieces: list[Piece] = []
        parts: list[str] = []
        size = 0
        for group in batch:
            meta = group_meta(group)
            tail = fmt.header_tail(meta["__topic__"], meta["__source__"])
            for sec, ns, fields in log_events(group, meta, sel):
                text = framed(sec, ns, fields, tail)
                parts.append(text)
                size += len(text)
                if size >= _PIECE_BYTES:
                    pieces.append(Piece("".join(parts).encode(), len(parts)))
                    parts, size = [], 0
        if parts:
            pieces.append(Piece("".join(parts).encode(), len(parts)))
        return pieces

    def _encode_datagrams(self, batch: Batch) -> list[Piece]:
        fmt, sel = self.formatter, self.selection
        frame = fmt.frame
        pieces: list[Piece] = []
        out: list[bytes] = []
        size = events = 0
        for group in batch:
            meta = group_meta(group)
            tail = fmt.header_tail(meta["__topic__"], meta["__source__"])
            for sec, ns, fields in log_events(group, meta, sel):
                for m in fmt.format(sec, ns, fields, tail):
                    if frame is not None:
                        m = frame(m)
                    out.append(m)
                    size += len(m)
                events += 1
                if size >= _PIECE_BYTES:
                    pieces.append(self._piece(out, events))
                    out, size, events = [], 0, 0
        if out:
            pieces.append(self._piece(out, events))
        return pieces

    def _piece(self, messages: list[bytes], events: int) -> Piece:
        if self.config.protocol == "udp":
            return Piece(b"", events, datagrams=messages)
        return Piece(b"".join(messages), events)

    async def preflight(self) -> None:
        """Nothing definite to check remotely (syslog has no credentials); TLS files were loaded already."""

    # ------------------------------------------------------------------ sending
    async def _sender_routine(self) -> None:
        delay = 0.5
        while self.failure is None:
            try:
                if self.config.protocol == "udp":
                    await self._send_datagrams()
                    continue
                await self._connect()
            except (OSError, asyncio.TimeoutError, ssl.SSLError) as exc:
                self.stats.errors += 1
                self.stats.retries += 1
                log.warning("%s: cannot connect (%s); %d events held, retrying in %.1fs", self.name,
                            exc or type(exc).__name__, sum(p.events for p in self._inflight) + self._queued_events(),
                            delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_DELAY)
                continue
            delay = 0.5
            try:
                await self._stream()
            except (OSError, asyncio.TimeoutError, ssl.SSLError) as exc:
                self.stats.errors += 1
                self.stats.retries += 1
                log.warning("%s: connection lost (%s); reconnecting, %d unacknowledged events will be sent again",
                            self.name, exc or type(exc).__name__, sum(p.events for p in self._inflight))
            finally:
                await self._disconnect()

    def _queued_events(self) -> int:
        return sum(p.events for p in self.queue)

    async def _connect(self) -> None:
        c = self.config
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(c.host, c.effective_port, ssl=self._ssl,
                                    server_hostname=(c.tls_server_name or c.host) if self._ssl else None,
                                    limit=1 << 16), c.timeout)
        self._writer = writer
        self._reader_task = asyncio.create_task(self._read_until_closed(reader))
        log.info("%s: connected", self.name)

    @staticmethod
    async def _read_until_closed(reader: asyncio.StreamReader) -> None:
        """Syslog receivers send nothing; reading tells us when the connection is closed (EOF/reset)."""
        while await reader.read(1 << 16):
            pass

    async def _disconnect(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
            self._reader_task = None
        if self._writer is not None:
            w, self._writer = self._writer, None
            w.close()
            try:
                await asyncio.wait_for(w.wait_closed(), 2)
            except (OSError, asyncio.TimeoutError, ssl.SSLError):
                pass

    def _write(self, piece: Piece) -> None:
        assert self._writer is not None
        self._writer.write(piece.data)
        self._sent += len(piece.data)
        piece.end = self._sent
        self._inflight.append(piece)

    def _delivered_offset(self) -> int:
        """Bytes of this connection the peer's TCP has acknowledged (a lower bound)."""
        assert self._writer is not None
        transport = self._writer.transport
        unsent = transport.get_write_buffer_size()
        if self._ssl is not None:
            raw = getattr(getattr(transport, "_ssl_protocol", None), "_transport", None)
            if raw is None:  # an SSL transport we cannot see into: only an empty pipe proves delivery
                sock = transport.get_extra_info("socket")
                return self._sent if unsent == 0 and _unacked_in_kernel(sock) == 0 else 0
            unsent += raw.get_write_buffer_size()
        return self._sent - unsent - _unacked_in_kernel(transport.get_extra_info("socket"))

    def _check_delivered(self) -> None:
        if not self._inflight:
            return
        offset = self._delivered_offset()
        done: list[Piece] = []
        while self._inflight and self._inflight[0].end <= offset:
            done.append(self._inflight.popleft())
        if done:
            self._acknowledge(done)

    async def _stream(self) -> None:
        """Send again what the last connection did not deliver, then whatever is queued, in order."""
        assert self._writer is not None and self._reader_task is not None
        resend, self._inflight = self._inflight, collections.deque()
        self._sent = 0
        for p in resend:
            self._write(p)
        if resend:
            await self._writer.drain()
        reader_task = self._reader_task
        while self.failure is None:
            if reader_task.done():
                raise ConnectionResetError("the receiver closed the connection")
            if self.queue:
                for p in self._take(_WRITE_BYTES):
                    self._write(p)
                await self._writer.drain()
            elif self._inflight:
                await asyncio.sleep(_ACK_POLL)
            else:
                ready = asyncio.ensure_future(self._ready.wait())
                await asyncio.wait({ready, reader_task}, return_when=asyncio.FIRST_COMPLETED)
                ready.cancel()
            self._check_delivered()

    async def _send_datagrams(self) -> None:
        """UDP: one datagram per message; delivered = handed to the kernel (at-most-once on the wire)."""
        c = self.config
        loop = asyncio.get_running_loop()
        transport, proto = await loop.create_datagram_endpoint(_Datagrams, remote_addr=(c.host, c.effective_port))
        try:
            while self.failure is None:
                await self._ready.wait()
                for p in self._take(_WRITE_BYTES):
                    for d in p.datagrams or ():
                        transport.sendto(d)
                    while transport.get_write_buffer_size():  # the kernel buffer is full: let it drain
                        await asyncio.sleep(0.001)
                    self._acknowledge([p])
                if proto.last_error is not None:
                    self.stats.errors += 1
                    log.warning("%s: %s (UDP: messages may be lost)", self.name, proto.last_error)
                    proto.last_error = None
                await asyncio.sleep(0)
        finally:
            transport.close()

    async def aclose(self) -> None:
        await super().aclose()
        await self._disconnect()
