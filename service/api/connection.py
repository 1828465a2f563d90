"""uvicorn's h11 protocol with a bound on receiving each request, for slow and idle clients.

uvicorn closes an idle keep-alive connection after `timeout_keep_alive`, but a connection that
never sends its first request, or stops half-way through its headers or body, stays open for
ever (measured: still open after 900 s). Here every request must arrive whole within
`receive_timeout_s` from the moment the connection may send it (connection made, or the previous
response done); otherwise the connection is closed. Other connections are unaffected.
"""

from __future__ import annotations

import asyncio
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)


def bounded_h11_protocol(receive_timeout_s: float) -> type[H11Protocol]:
    """An H11Protocol class that closes connections whose request takes over receive_timeout_s."""

    class BoundedH11Protocol(H11Protocol):
        _receive_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR):
                self._disarm()  # the request is in; the app's time is the deadline's business

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()  # the next request on this connection gets its own bound

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._receive_timer = self.loop.call_later(receive_timeout_s, self._on_receive_timeout)

        def _disarm(self) -> None:
            if self._receive_timer is not None:
                self._receive_timer.cancel()
                self._receive_timer = None

        def _on_receive_timeout(self) -> None:
            self._receive_timer = None
            if self.conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED) or self.transport.is_closing():
                return
            log.info("closing a connection whose request did not arrive within %.1fs", receive_timeout_s)
            self.transport.close()  # a cycle waiting for its body sees http.disconnect

    return BoundedH11Protocol
