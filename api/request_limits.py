"""Limits on a request enforced before any route sees it: the body's size, and a path
that could name nothing (PostgreSQL cannot even look up an id with a NUL in it)."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_body


class _Disconnected(Exception):
    """The client went away before its body was complete."""


class BodyLimit:
    """Answers 413 (in the API's error shape) when a body is over `max_bytes`.

    A declared Content-Length over the cap is refused at once; otherwise the body is read
    up to the cap (a chunked upload declares nothing) and handed on whole, so the app never
    sees a body it would have to refuse halfway through.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._declared(scope) > self.max_bytes:
            await self._refuse(send)
            return
        try:
            body = await self._read(receive)
        except _Disconnected:
            return  # nobody is left to answer, and a partial body must not be acted on
        if body is None:
            await self._refuse(send)
            return
        await self.app(scope, _replay(body, receive), send)

    def _declared(self, scope: Scope) -> int:
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return 0  # the server refuses a malformed length before we get here
        return 0

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body, or None once it passes the cap."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _refuse(self, send: Send) -> None:
        message = f"the request body is over {self.max_bytes} bytes"
        await _answer(send, 413, error_body("too_large", message, {"max_bytes": self.max_bytes}))


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body, only a disconnect is left to hear

    return replayed


class NulInPath:
    """Answers 404 (in the API's error shape) for a path with a NUL character: no case,
    task, escalation or SOP can have one, and a database lookup of it would fail."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and "\x00" in scope.get("path", ""):
            await _answer(send, 404, error_body("not_found", "the path contains a NUL character"))
            return
        await self.app(scope, receive, send)


async def _answer(send: Send, status: int, body: dict[str, object]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
