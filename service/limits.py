"""Request-body limit: refuse an oversized upload while it streams in, with a message."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

FORM_OVERHEAD = 64 * 1024  # multipart boundaries and the small form fields
DRAIN_FACTOR = 4  # read (and drop) at most this many limits more, so clients see the 413


class BodyTooLargeError(HTTPException):
    """The request body went over the limit (raised from ``receive``)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the upload is larger than the limit of {limit} bytes")


class BodyLimitMiddleware:
    """Counts body bytes as they arrive and stops at ``limit`` (+ form overhead).

    A declared ``Content-Length`` over the limit is refused before reading anything.
    Past the limit, the rest of the body is read and dropped (up to a cap) so that
    the client, still sending, can read the 413 instead of a reset connection.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.cap = limit + FORM_OVERHEAD

    async def _drain(self, receive: Receive, already: int) -> None:
        received = already
        more = True
        while more and received <= self.cap * DRAIN_FACTOR:
            message = await receive()
            if message["type"] != "http.request":
                return
            received += len(message.get("body", b""))
            more = bool(message.get("more_body", False))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.cap:
            logger.info("refused a %s-byte body (limit %d)", declared.decode(), self.limit)
            if int(declared) <= self.cap * DRAIN_FACTOR:
                await self._drain(receive, 0)
            error = BodyTooLargeError(self.limit)
            response = JSONResponse({"detail": error.detail}, status_code=413)
            await response(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.cap:
                    logger.info("refused a streamed body past %d bytes", self.limit)
                    if message.get("more_body", False):
                        await self._drain(receive, received)
                    raise BodyTooLargeError(self.limit)
            return message

        await self.app(scope, counting_receive, send)
