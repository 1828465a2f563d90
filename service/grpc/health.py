"""grpc.health.v1.Health for the whole server ("") and each service: SERVING only while ready."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from grpc_health.v1 import health, health_pb2

from service.dataplane import DataPlane


class ReadinessHealthServicer(health.aio.HealthServicer):  # type: ignore[misc]  # grpcio-health ships no types
    """Serving = DataPlane.ready and the lifecycle's switch (set_serving, on by default).

    Check and Watch re-read both as they start, so a flip of the plane's readiness (models loaded,
    draining) shows without help; `set_serving` / `await sync()` also push the change to open
    Watch streams at once. `await enter_graceful_shutdown()` (inherited) pins NOT_SERVING.
    """

    def __init__(self, plane: DataPlane, services: Sequence[str]) -> None:
        super().__init__()
        self._plane = plane
        self._services = (health.OVERALL_HEALTH, *services)
        self._allowed = True
        self._pushes: set[asyncio.Task[None]] = set()

    @property
    def serving(self) -> bool:
        return self._allowed and self._plane.ready

    def set_serving(self, serving: bool) -> None:
        """The lifecycle's switch; call it on the server's event loop (no await needed)."""
        self._allowed = serving
        push = asyncio.get_running_loop().create_task(self.sync())
        self._pushes.add(push)
        push.add_done_callback(self._pushes.discard)

    async def sync(self) -> None:
        """Publish the current status to every service name (and its watchers)."""
        response = health_pb2.HealthCheckResponse
        status = response.SERVING if self.serving else response.NOT_SERVING
        for service in self._services:
            await self.set(service, status)

    async def Check(self, request: health_pb2.HealthCheckRequest, context: Any) -> Any:
        await self.sync()
        return await super().Check(request, context)

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Any) -> None:
        await self.sync()
        await super().Watch(request, context)
