"""AccessLogMiddleware (pure ASGI, outermost): one access line per request, refusals included.

Opens the request's RequestRecord (service/logs.py) before anything else runs, so the guard's
401/415, the body limit's 413 and the routes' answers are all logged the same way; the record
learns model and task from the metrics and the stage timings from the route (request.state).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.admission import TIMINGS_STATE_KEY
from service.api.middleware import request_id_of
from service.logs import RequestRecord, current_request, write_access_line

TRANSPORT = "http"
CLIENT_GONE = 499  # nginx's code for "the client closed the connection before the response"


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["request_id"] = request_id_of(scope)
        record = RequestRecord(state["request_id"], TRANSPORT, scope["method"], scope["path"])
        status = CLIENT_GONE

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        token = current_request.set(record)
        try:
            await self.app(scope, receive, send_and_note)
        finally:
            current_request.reset(token)
            record.timings = record.timings or state.get(TIMINGS_STATE_KEY)
            write_access_line(record, status)
