"""Malformed HTTP (a bad request line, a control character in a header, broken chunking) answered in SLS's
error format, with one log line.

aiohttp rejects such requests before any handler runs and answers ``text/plain``, logging a full traceback
at ERROR for each: an SLS client then fails to parse the error, and anyone able to reach the port can fill
the log. Here the HTTP layer's error answer is replaced: same status, SLS JSON body (``errorCode``,
``errorMessage``), the connection closed as before, and a single WARNING line.

aiohttp has no public hook for this, so ``SLSAppRunner`` swaps the request-handler class of the server it
builds (aiohttp is pinned below 4 in pyproject.toml; tests/faults/test_fuzz_sweep.py sends such requests).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server

from ..wire import errors as E

__all__ = ["SLSAppRunner"]

log = logging.getLogger("sluice.hub")

_BY_STATUS: dict[int, type[E.SLSError]] = {413: E.PostBodyTooLarge}


class _SLSRequestHandler(RequestHandler):
    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500 or request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)  # a bug or a broken connection
        reason = " ".join(str(exc or message or "malformed request").split())[:300]
        log.warning("malformed HTTP request from %s answered %d: %s", request.remote, status, reason)
        err = _BY_STATUS.get(status, E.ParameterInvalid)(f"malformed HTTP request: {reason}")
        resp = web.Response(status=status, body=json.dumps(err.to_json()).encode(), content_type="application/json")
        resp.force_close()
        return resp


class _SLSServer(Server):
    def __call__(self) -> RequestHandler:
        return _SLSRequestHandler(self, loop=self._loop, **self._kwargs)


class SLSAppRunner(web.AppRunner):
    """``web.AppRunner`` whose connections answer malformed HTTP in SLS's error format."""

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        server.__class__ = _SLSServer
        return server
