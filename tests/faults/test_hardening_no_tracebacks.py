"""Unauthenticated clients cannot fill the hub's log with tracebacks (#17 item 8's class).

A non-ASCII console cookie gave a 500 and a traceback per request. The same class: a client that closes the
connection before its body arrives (API or console sign-in) and a sign-in form sent as multipart with a
non-ASCII boundary each wrote a traceback (and the latter answered 500). Each now gets a clean 4xx (or nothing,
when the client is gone) and the log gets no traceback.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from sluice.testing import HubProcess


def _send(hub: HubProcess, raw: bytes, *, close_after: float | None = None) -> bytes:
    s = socket.create_connection((hub.host, hub.port))
    s.settimeout(5)
    s.sendall(raw)
    if close_after is not None:
        time.sleep(close_after)
        s.close()
        return b""
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    return data.split(b"\r\n", 1)[0]


def test_hardening_clients_cannot_write_tracebacks_to_the_log(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path / "data", log_path=tmp_path / "hub.log")
    hub.start()
    try:
        host = hub.host.encode()
        form = b"Content-Type: application/x-www-form-urlencoded\r\n"
        for path in (b"/logstores", b"/console/login"):  # the body never arrives: the client goes away
            _send(hub, b"POST " + path + b" HTTP/1.1\r\nHost: p1." + host + b"\r\n" + form +
                  b"Content-Length: 100\r\n\r\nkey_id=a", close_after=0.3)
        status = _send(hub, b"POST /console/login HTTP/1.1\r\nHost: " + host + b"\r\nContent-Type: multipart/form-data;"
                       b" boundary=\xff\xfe\r\nContent-Length: 4\r\n\r\nabcd")
        assert status.startswith(b"HTTP/1.1 4"), status
        body = b"key_id=\xff\xfe&secret=\xc3\xa9\xff"
        status = _send(hub, b"POST /console/login HTTP/1.1\r\nHost: " + host + b"\r\n" + form +
                       b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        assert status == b"HTTP/1.1 200 OK", status  # the form again: wrong key
        status = _send(hub, b"GET /console/ HTTP/1.1\r\nHost: " + host + b"\r\nCookie: sluice_console=\xc3\xa9\r\n\r\n")
        assert status == b"HTTP/1.1 303 See Other", status
        time.sleep(0.5)
        log = (tmp_path / "hub.log").read_text(errors="replace")
        assert "Traceback" not in log, log[-3000:]
        assert " ERROR " not in log, log[-3000:]
    finally:
        hub.close()
