"""``HEAD`` wherever ``GET`` works: the ``GET`` answer's status and headers, no body."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Server extensions that send a body without ``http.response.body`` messages (a file by
# path): hidden from a HEAD's GET, so that every byte of its body passes here and is dropped.
BODY_EXTENSIONS = ("http.response.pathsend", "http.response.zerocopysend")


class HeadMiddleware:
    """Runs a ``HEAD`` request as ``GET`` and drops the body it answers.

    FastAPI routes answer only the methods they declare, so without this a ``HEAD`` on
    a checkpoint, a job or an artifact is a 405. The headers (``Content-Length``,
    ``ETag``, ``Content-Type``) are those of the ``GET``, as HTTP asks.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        finished = False

        async def send_headers_only(message: Message) -> None:
            nonlocal finished
            if message["type"] != "http.response.body":
                await send(message)
            elif not finished:
                finished = not message.get("more_body", False)
                if finished:
                    await send({"type": "http.response.body", "body": b"",
                                "more_body": False})

        extensions = {name: value for name, value in scope.get("extensions", {}).items()
                      if name not in BODY_EXTENSIONS}
        await self.app({**scope, "method": "GET", "extensions": extensions}, receive,
                       send_headers_only)
