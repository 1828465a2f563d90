"""THE in-process real server for the tests: REST (uvicorn) and gRPC (grpc.aio) over one Core.

One event loop in a background thread runs both listeners on free 127.0.0.1 ports, wired the way
service/server.py wires them (one ApiKeys object for both, the server's own HTTP socket and
uvicorn configuration, the readiness-following gRPC health servicer), so a test reaches the same
models through either transport and reads the same counters. The session fixtures in
tests/conftest.py share one such server (all three models, default settings) between the test
modules; a test that needs other settings starts its own with `running_server(settings_for(...))`.
A server as a separate process (signals, exit codes, TLS files, logs) is loadtest/server.py's
ServerProcess, the one subprocess harness; `server_process` here starts it the way tests want it.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import httpx
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from loadtest.server import ServerProcess
from service.config import Settings
from service.core import Core, build_core, load_models, stop_core
from service.grpc import SERVICE_NAMES, ReadinessHealthServicer, build_grpc_server
from service.grpc.generated.inference import grpc_service_pb2_grpc
from service.grpc.generated.squeezeserve.v1 import squeezeserve_pb2_grpc
from service.security import load_api_keys
from service.server import bind_http_socket, http_config

T = TypeVar("T")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


@dataclass
class RunningServer:
    core: Core
    loop: asyncio.AbstractEventLoop
    http_port: int
    grpc_port: int
    health: ReadinessHealthServicer

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0, **kwargs)

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

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 30.0) -> T:
        """Run a coroutine on the server's loop (the core's objects belong to it)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def metric(self, name: str, **labels: str) -> float:
        """The first sample of `name` whose labels include `labels`, as /metrics shows it (0: none yet)."""
        return sample_value(httpx.get(self.url + "/metrics", timeout=10.0).text, name, **labels)


def sample_value(exposition: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition") -> None:
    """Poll until true; fails the test, naming `what`, when it is not within timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} not met within {timeout_s}s"
        time.sleep(0.01)


def settings_for(store: Path, **overrides: Any) -> Settings:
    defaults = {"store_dir": store, "host": "127.0.0.1", "session_instances": 1, "intra_op_threads": 1}
    return Settings(**{**defaults, **overrides})


def server_process(
    store: Path, log_path: Path | None = None, ready: Callable[[ServerProcess], bool] | None = None, **settings: str
) -> ServerProcess:
    """`squeezeserve serve` as a process (a context manager), configured by `settings` alone (no
    SQZ_* or OTEL_* variable of the test run leaks in), one ORT session with one thread per model."""
    env = {"SQZ_SESSION_INSTANCES": "1", "SQZ_INTRA_OP_THREADS": "1", **settings}
    return ServerProcess(store, env=env, log_path=log_path, ready=ready, isolated=True, ready_timeout_s=120)


def single_model_store(store: Path, target: Path, name: str = "sequence-classification") -> Path:
    """A store holding one model: dedicated servers load faster."""
    if not (target / name).exists():
        shutil.copytree(store / name, target / name)
    return target


@dataclass
class _Listeners:
    server: RunningServer
    http: uvicorn.Server
    http_task: asyncio.Task[None]
    grpc: grpc.aio.Server


async def _start(settings: Settings, load: bool) -> _Listeners:
    core = build_core(settings)
    if load:
        await load_models(core)
    api_keys = load_api_keys(settings)
    health = ReadinessHealthServicer(core.plane, SERVICE_NAMES)
    grpc_server, grpc_port = build_grpc_server(core.plane, 0, health, api_keys)
    await grpc_server.start()
    await health.sync()
    sock = bind_http_socket("127.0.0.1", 0)
    http = uvicorn.Server(http_config(core, api_keys, log_level="warning", timeout_graceful_shutdown=5))
    http_task = asyncio.create_task(http.serve(sockets=[sock]), name="http")
    deadline = time.monotonic() + START_TIMEOUT_S
    while not http.started:
        if http_task.done():
            http_task.result()  # raises what stopped it
            raise RuntimeError("the HTTP server stopped while starting")
        if time.monotonic() > deadline:
            raise TimeoutError("the HTTP server did not start in time")
        await asyncio.sleep(0.01)
    running = RunningServer(core, asyncio.get_running_loop(), sock.getsockname()[1], grpc_port, health)
    return _Listeners(running, http, http_task, grpc_server)


async def _stop(listeners: _Listeners) -> None:
    listeners.http.should_exit = True
    await asyncio.gather(
        asyncio.wait_for(listeners.http_task, STOP_TIMEOUT_S / 2),
        listeners.grpc.stop(grace=1.0),
        return_exceptions=True,
    )
    await stop_core(listeners.server.core, timeout_s=5.0)


@contextmanager
def running_server(settings: Settings, load: bool = True) -> Iterator[RunningServer]:
    """Both listeners on free ports; `load=False` leaves the models unloaded (the server is not ready)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-server", daemon=True)
    thread.start()
    try:
        listeners = asyncio.run_coroutine_threadsafe(_start(settings, load), loop).result(START_TIMEOUT_S)
        try:
            yield listeners.server
        finally:
            asyncio.run_coroutine_threadsafe(_stop(listeners), loop).result(STOP_TIMEOUT_S)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
