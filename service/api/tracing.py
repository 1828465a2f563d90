"""TracingMiddleware (pure ASGI, outermost; only when tracing is on): the request's SERVER span.

The caller's W3C `traceparent` header is the parent; the pipeline's stage spans (service/tracing.py)
become children because the span is current in the context the app runs in. Probes and metric
scrapes (the "health" and "metrics" families of api/guard.py) are not traced: they would bury the
requests in a span every few seconds per replica.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import tracing
from service.api.guard import EXEMPT_PATHS

UNTRACED = EXEMPT_PATHS["health"] | EXEMPT_PATHS["metrics"]


class TracingMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNTRACED:
            await self.app(scope, receive, send)
            return
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())}
        method, path = scope["method"], scope["path"]
        attributes = {"http.request.method": method, "url.path": path}
        with tracing.request_span(f"{method} {path}", carrier, attributes) as span:
            status = 0

            async def send_and_note(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await self.app(scope, receive, send_and_note)
            finally:
                if span is not None:  # None: tracing was stopped while the server ran (tests)
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500 or status == 0:
                        span.set_status(tracing.error_status(str(status or "no response")))
