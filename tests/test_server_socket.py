"""The HTTP listener the server binds itself: accepted connections must not wait on Nagle."""

from __future__ import annotations

import asyncio
import socket

from service.server import bind_http_socket


def test_accepted_connections_send_at_once() -> None:
    """TCP_NODELAY on every accepted connection. Without it a keep-alive response's second segment
    waited for the client's delayed ACK: ~40 ms added to every request after a connection's first."""

    async def scenario() -> int:
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        listener = bind_http_socket("127.0.0.1", 0)
        server = await asyncio.start_server(on_connection, sock=listener)
        async with server:
            _, writer = await asyncio.open_connection(*listener.getsockname())
            nodelay = await asyncio.wait_for(seen, 10)
            writer.close()
        return nodelay

    assert asyncio.run(scenario()) != 0
