"""A small HTTP Event Collector (Splunk HEC protocol) receiver for tests and benchmarks.

It answers the way HEC does: ``Authorization: Splunk <token>`` (missing: 401 code 2, malformed: 401
code 3, wrong: 403 code 4), bodies of concatenated JSON events, gzip when ``Content-Encoding: gzip``, "No
data" (400 code 5) for an empty body, "Invalid data format" (code 6, with ``invalid-event-number``), the
event field required (12) and not blank (13). With ``ack=True`` (indexer acknowledgement enabled on the
token) a request needs a channel (``X-Splunk-Request-Channel`` or ``?channel=``, a GUID: 10/11), the
answer carries an ``ackId`` per channel, and ``POST /services/collector/ack`` reports ids indexed once
``ack_delay`` has passed; with acks disabled that endpoint answers code 14.

``fail(status, seconds)`` makes it refuse every request for a while (503 "Server is busy", code 9);
nothing sent meanwhile is kept. Events are kept in ``events`` (parsed dicts), or only counted with
``keep=False`` (the benchmark). Run it in a thread (``HecReceiver.start()``) or as its own process:
``python tests/_hec_receiver.py --port P --token T [--ack]``; then ``GET /_stats`` gives the counts.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import re
import threading
import time
import uuid
from typing import Any

from aiohttp import web

_WS = re.compile(r"[ \t\r\n]*")


def _reply(status: int, text: str, code: int, **extra: Any) -> web.Response:
    return web.json_response({"text": text, "code": code, **extra}, status=status)


class HecReceiver:
    def __init__(self, token: str, *, ack: bool = False, ack_delay: float = 0.2, keep: bool = True,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.token = token
        self.ack = ack
        self.ack_delay = ack_delay
        self.keep = keep
        self.host, self.port = host, port
        self.events: list[dict[str, Any]] = []
        self.arrived: list[float] = []  # wall time each kept event was accepted (parallel to ``events``)
        self.event_count = 0
        self.bytes_in = 0  # decompressed body bytes accepted
        self.requests = 0
        self.gzip_requests = 0
        self.refused = 0  # requests answered with an error status
        self.refused_batches = 0  # ... of them, the ones that carried events (not an empty probe)
        self.max_batch = 0
        self.ack_polls = 0
        self._fail_until = 0.0
        self._fail_for = 0.0  # a pending outage that starts at the first batch (fail(from_first_batch=True))
        self._fail_status = 503
        self._channels: dict[str, dict[int, float]] = {}  # channel -> ackId -> indexed-at time
        self._next_ack: dict[str, int] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------------ control
    def fail(self, status: int = 503, seconds: float = 3.0, *, from_first_batch: bool = False) -> None:
        """Refuse every request for ``seconds``: from now, or (``from_first_batch``) from the first request that
        carries events, so a sender slow to start (a loaded machine) still meets the outage."""
        self._fail_status = status
        self._fail_for = seconds if from_first_batch else 0.0
        self._fail_until = 0.0 if from_first_batch else time.monotonic() + seconds

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.events)

    def arrivals(self) -> list[tuple[float, dict[str, Any]]]:
        with self._lock:
            return list(zip(self.arrived, self.events))

    # ------------------------------------------------------------------ protocol
    def _auth(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization")
        if header is None:
            return _reply(401, "Token is required", 2)
        scheme, _, token = header.partition(" ")
        if scheme != "Splunk" or not token:
            return _reply(401, "Invalid authorization", 3)
        if token != self.token:
            return _reply(403, "Invalid token", 4)
        return None

    def _channel(self, request: web.Request) -> tuple[str | None, web.Response | None]:
        channel = request.headers.get("X-Splunk-Request-Channel") or request.query.get("channel")
        if not self.ack:
            return channel, None
        if not channel:
            return None, _reply(400, "Data channel is missing", 10)
        try:
            uuid.UUID(channel)
        except ValueError:
            return None, _reply(400, "Invalid data channel", 11)
        return channel, None

    async def _event(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.read()
        if self._fail_for and body:
            self._fail_until, self._fail_for = time.monotonic() + self._fail_for, 0.0
        if time.monotonic() < self._fail_until:
            self.refused += 1
            self.refused_batches += bool(body)
            return _reply(self._fail_status, "Server is busy", 9)
        problem = self._auth(request)
        if problem is None:
            channel, problem = self._channel(request)
        if problem is not None:
            self.refused += 1
            return problem
        if request.headers.get("Content-Encoding") == "gzip":
            self.gzip_requests += 1
            try:  # aiohttp's server inflates gzip bodies itself; a still-compressed body is inflated here
                body = gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body
            except (OSError, EOFError):
                self.refused += 1
                return _reply(400, "Invalid data format", 6, **{"invalid-event-number": 0})
        text = body.decode("utf-8", errors="replace")
        events: list[dict[str, Any]] = []
        decoder = json.JSONDecoder()
        pos = _WS.match(text, 0).end()  # type: ignore[union-attr]
        while pos < len(text):
            try:
                obj, pos = decoder.raw_decode(text, pos)
            except ValueError:
                self.refused += 1
                return _reply(400, "Invalid data format", 6, **{"invalid-event-number": len(events)})
            if not isinstance(obj, dict) or "event" not in obj:
                self.refused += 1
                return _reply(400, "Event field is required", 12, **{"invalid-event-number": len(events)})
            if obj["event"] in ("", None, {}):
                self.refused += 1
                return _reply(400, "Event field cannot be blank", 13, **{"invalid-event-number": len(events)})
            events.append(obj)
            pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
        if not events:
            self.refused += 1
            return _reply(400, "No data", 5)
        with self._lock:
            if self.keep:
                self.events.extend(events)
                self.arrived.extend([time.time()] * len(events))
            self.event_count += len(events)
            self.bytes_in += len(body)
            self.max_batch = max(self.max_batch, len(events))
        if not self.ack:
            return _reply(200, "Success", 0)
        assert channel is not None
        ack_id = self._next_ack.get(channel, 0)
        self._next_ack[channel] = ack_id + 1
        self._channels.setdefault(channel, {})[ack_id] = time.monotonic() + self.ack_delay
        return _reply(200, "Success", 0, ackId=ack_id)

    async def _ack(self, request: web.Request) -> web.Response:
        self.ack_polls += 1
        if time.monotonic() < self._fail_until:
            return _reply(self._fail_status, "Server is busy", 9)
        problem = self._auth(request)
        if problem is not None:
            return problem
        if not self.ack:
            return _reply(400, "ACK is disabled", 14)
        channel, problem = self._channel(request)
        if problem is not None:
            return problem
        assert channel is not None
        try:
            ids = (await request.json())["acks"]
        except (ValueError, KeyError, TypeError):
            return _reply(400, "Invalid data format", 6)
        pending = self._channels.get(channel, {})
        now = time.monotonic()
        status = {}
        for i in ids:
            indexed = i in pending and pending[i] <= now
            if indexed:
                del pending[i]  # an id is reported indexed once, as HEC does
            status[str(i)] = indexed
        return web.json_response({"acks": status})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response({"events": self.event_count, "bytes": self.bytes_in, "requests": self.requests,
                                  "refused": self.refused, "max_batch": self.max_batch})

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_post("/services/collector/event", self._event)
        app.router.add_post("/services/collector", self._event)
        app.router.add_post("/services/collector/event/1.0", self._event)
        app.router.add_post("/services/collector/ack", self._ack)
        app.router.add_get("/_stats", self._stats)
        return app

    # ------------------------------------------------------------------ running
    async def serve(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if not self.port:
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def start(self) -> "HecReceiver":
        """Serve on a thread of its own (its own event loop); returns once it listens."""
        ready = threading.Event()

        def main() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.serve())
            ready.set()
            self._loop.run_forever()
            assert self._runner is not None
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=main, name="hec-receiver", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the HEC receiver did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> "HecReceiver":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--ack", action="store_true")
    args = p.parse_args()
    receiver = HecReceiver(args.token, ack=args.ack, keep=False, host=args.host, port=args.port)
    web.run_app(receiver.app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
