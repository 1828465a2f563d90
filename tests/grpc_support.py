"""A real grpc.aio server on 127.0.0.1 (free port) in a background thread with its own loop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc

from service.config import Settings
from service.core import Core, build_core, load_models, stop_core
from service.grpc import SERVICE_NAMES, ReadinessHealthServicer, build_grpc_server
from service.grpc.generated.inference import grpc_service_pb2_grpc
from service.grpc.generated.squeezeserve.v1 import squeezeserve_pb2_grpc

T = TypeVar("T")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


@dataclass
class RunningServer:
    core: Core
    port: int
    loop: asyncio.AbstractEventLoop
    health: ReadinessHealthServicer
    server: grpc.aio.Server

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 10.0) -> T:
        """Run a coroutine on the server's loop (e.g. `health.sync()`)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def metric(self, name: str, **labels: str) -> float:
        return self.core.metrics.registry.get_sample_value(name, labels) or 0.0

    @contextmanager
    def channel(self) -> Iterator[grpc.Channel]:
        with grpc.insecure_channel(self.address) as channel:
            grpc.channel_ready_future(channel).result(timeout=10)
            yield channel

    @contextmanager
    def stubs(self) -> Iterator[tuple[Any, Any]]:
        """(squeezeserve.v1 Inference stub, KServe GRPCInferenceService stub)."""
        with self.channel() as channel:
            yield squeezeserve_pb2_grpc.InferenceStub(channel), grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)


async def _start(settings: Settings, load: bool) -> tuple[Core, grpc.aio.Server, int, ReadinessHealthServicer]:
    core = build_core(settings)
    if load:
        await load_models(core)
    health = ReadinessHealthServicer(core.plane, SERVICE_NAMES)
    server, port = build_grpc_server(core.plane, 0, health)
    await server.start()
    await health.sync()
    return core, server, port, health


async def _stop(core: Core, server: grpc.aio.Server) -> None:
    await server.stop(grace=1.0)
    await stop_core(core, timeout_s=5.0)


@contextmanager
def serving(store: Path, load: bool = True, **overrides: Any) -> Iterator[RunningServer]:
    """Start core + gRPC server; `load=False` leaves the models unloaded (the server is not ready)."""
    settings = Settings(store_dir=store, session_instances=1, intra_op_threads=1, host="127.0.0.1", **overrides)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="grpc-test-server", daemon=True)
    thread.start()
    try:
        core, server, port, health = asyncio.run_coroutine_threadsafe(_start(settings, load), loop).result(
            START_TIMEOUT_S
        )
        try:
            yield RunningServer(core, port, loop, health, server)
        finally:
            asyncio.run_coroutine_threadsafe(_stop(core, server), loop).result(STOP_TIMEOUT_S)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} not met within {timeout_s}s"
        time.sleep(0.01)
