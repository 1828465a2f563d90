"""uvicorn's httptools protocol with two bounds per request: its arrival time and its head's size.

- **Arrival time.** uvicorn closes an idle keep-alive connection after `timeout_keep_alive`, but a
  connection that never sends its first request, or stops half-way through its headers or body,
  stays open for ever (measured: still open after 900 s). Here every request must arrive whole
  within `receive_timeout_s` from the moment the connection may send it (connection made, or the
  previous response done); otherwise the connection is closed. Other connections are unaffected.
- **Head size.** llhttp (under httptools) puts no bound on a request's head, and uvicorn keeps
  every header it is given: a client could stream headers until memory runs out. Here a head that
  has passed `max_head_bytes` without ending is answered 431 and the connection closed. (Heads
  that end within that are checked for their headers' count and size by the request middleware,
  which answers 431 in the API's error shape and counts it.)

httptools rather than h11: the C parser takes ~0.1-0.3 ms less per request than h11's pure Python
one, in series with every request a lone caller makes (docs/benchmarks.md, "A lone caller").
"""

from __future__ import annotations

import asyncio
import json
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

HEAD_TOO_LARGE_STATUS = 431


def _head_too_large_response(max_head_bytes: int) -> bytes:
    message = f"the request head is over the limit of {max_head_bytes} bytes"
    body = json.dumps({"error": {"type": "headers_too_large", "message": message}}).encode()
    return b"".join(
        [
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
            body,
        ]
    )


def bounded_protocol(receive_timeout_s: float, max_head_bytes: int) -> type[HttpToolsProtocol]:
    """An HttpToolsProtocol class with the arrival-time and head-size bounds above."""
    refusal = _head_too_large_response(max_head_bytes)

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        _receive_timer: asyncio.TimerHandle | None = None
        _in_head = True  # bytes arriving now belong to a request head
        _head_bytes = 0
        _partial = False  # a request has begun to arrive and is not whole yet

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._in_head:
                self._head_bytes += len(data)
            super().data_received(data)
            if self._in_head and self._head_bytes > max_head_bytes and not self.transport.is_closing():
                log.info("refusing a request head of over %d bytes", max_head_bytes)
                self.transport.write(refusal)
                self.transport.close()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._partial = True

        def on_headers_complete(self) -> None:
            self._in_head = False
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._in_head, self._head_bytes, self._partial = True, 0, False
            self._disarm()  # the request is in; the app's time is the deadline's business

        def on_response_complete(self) -> None:
            super().on_response_complete()  # may start a pipelined request that has arrived whole
            running = self.cycle is not None and not self.cycle.response_complete
            if not running or self._partial:
                self._arm()  # the next request on this connection gets its own bound

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            if not self.transport.is_closing():
                self._receive_timer = self.loop.call_later(receive_timeout_s, self._on_receive_timeout)

        def _disarm(self) -> None:
            if self._receive_timer is not None:
                self._receive_timer.cancel()
                self._receive_timer = None

        def _on_receive_timeout(self) -> None:
            self._receive_timer = None  # armed only while a request is still to arrive
            if self.transport.is_closing():
                return
            log.info("closing a connection whose request did not arrive within %.1fs", receive_timeout_s)
            self.transport.close()  # a cycle waiting for its body sees http.disconnect

    return BoundedHttpToolsProtocol
