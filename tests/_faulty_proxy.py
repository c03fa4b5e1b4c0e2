"""A TCP proxy on loopback that breaks the connection between a client and a hub on command.

Faults, as networks produce them:
* ``reset()``: every open connection is torn down with a TCP RST (SO_LINGER 0), both sides;
* ``truncate(n)``: the next ``n`` server->client chunks are cut in half and the connection is reset, so the
  client sees a response that stops mid-body;
* ``stall(seconds)``: for that long, every byte in either direction is swallowed; connections touched by the
  stall stay black holes for good (like a peer that vanished without a FIN), so only the client's own
  timeouts get it out; new connections after the stall work.

It runs its own event loop in a thread, so tests drive it from plain synchronous code.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time

__all__ = ["FaultyProxy"]


class _Conn:
    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream
        self.dead = False  # black-holed by a stall

    def abort(self) -> None:
        for w in (self.client, self.upstream):
            sock = w.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
            w.transport.abort()


class FaultyProxy:
    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.port = 0
        self.conns: set[_Conn] = set()
        self.stats = {"connections": 0, "resets": 0, "truncated": 0, "stalled": 0}
        self._stall_until = 0.0
        self._truncate = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "the proxy did not start"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ------------------------------------------------------------------ commands (any thread)
    def reset(self) -> None:
        def go() -> None:
            for conn in list(self.conns):
                conn.abort()
                self.stats["resets"] += 1
        self._loop.call_soon_threadsafe(go)

    def truncate(self, responses: int = 1) -> None:
        def go() -> None:
            self._truncate += responses
        self._loop.call_soon_threadsafe(go)

    def stall(self, seconds: float) -> None:
        self._stall_until = time.monotonic() + seconds
        self.stats["stalled"] += 1

    def close(self) -> None:
        async def shutdown() -> None:
            self._server.close()
            for conn in list(self.conns):
                conn.abort()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._server.wait_closed()
            await asyncio.sleep(0)  # let the aborted transports run their close callbacks

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    # ------------------------------------------------------------------ the loop
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._accept, self.host, 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        conn = _Conn(writer, up_writer)
        self.conns.add(conn)
        self.stats["connections"] += 1
        try:
            await asyncio.gather(self._pipe(conn, reader, up_writer, to_client=False),
                                 self._pipe(conn, up_reader, writer, to_client=True))
        finally:
            self.conns.discard(conn)
            conn.abort()

    async def _pipe(self, conn: _Conn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    to_client: bool) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    if not conn.dead:
                        writer.close()
                    return
                if conn.dead or time.monotonic() < self._stall_until:
                    conn.dead = True  # swallowed, now and forever
                    continue
                if to_client and self._truncate > 0:
                    self._truncate -= 1
                    self.stats["truncated"] += 1
                    writer.write(data[: max(1, len(data) // 2)])
                    await writer.drain()
                    conn.abort()
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            conn.abort()
