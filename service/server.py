"""One process, one event loop: uvicorn (REST) and grpc.aio (gRPC) over one Core.

Startup: listeners first (liveness answers, readiness false), then load and warm every model,
then ready. SIGTERM/SIGINT: readiness false and gRPC health NOT_SERVING at once, wait
drain_delay_s so load balancers stop sending, close the listeners, let in-flight requests
finish within shutdown_grace_s, drain the batchers, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator

import grpc
import uvicorn

from service.api.app import create_app
from service.config import Settings
from service.core import Core, build_core, load_models, stop_core
from service.grpc import SERVICE_NAMES, ReadinessHealthServicer, build_grpc_server

log = logging.getLogger(__name__)


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the lifecycle below decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _http_server(core: Core) -> _Uvicorn:
    s = core.settings
    config = uvicorn.Config(
        create_app(core),
        host=s.host,
        port=s.http_port,
        log_level=s.log_level,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=int(max(1, s.shutdown_grace_s)),
    )
    return _Uvicorn(config)


def _on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not main thread / platform
            loop.add_signal_handler(sig, stop.set)


async def _load(core: Core, health: ReadinessHealthServicer) -> None:
    try:
        await load_models(core)
    except Exception:  # a bug while loading must be loud; the process stays up, not ready
        log.exception("loading models failed; staying not-ready")
        return
    await health.sync()  # Watch streams learn that the models are ready
    if core.state.ready:
        log.info("ready: %s", ", ".join(s.name for s in core.registry.statuses()))
    else:
        log.error("no model could be loaded from %s; staying not-ready", core.settings.store_dir)


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> int:
    """Run until `stop` is set (or SIGTERM/SIGINT); returns the process exit code."""
    stop = stop or asyncio.Event()
    _on_signals(stop)
    core = build_core(settings)
    health = ReadinessHealthServicer(core.state, SERVICE_NAMES)
    try:
        grpc_server, grpc_port = build_grpc_server(core, health_servicer=health)
    except RuntimeError as exc:  # grpc raises this when the port cannot be bound
        log.error("cannot listen for gRPC on %s:%d: %s", settings.host, settings.grpc_port, exc)
        return 1
    http = _http_server(core)
    await grpc_server.start()
    http_task = asyncio.create_task(http.serve(), name="http")
    log.info("listening: http %s:%d, grpc %s:%d", settings.host, settings.http_port, settings.host, grpc_port)
    loader = asyncio.create_task(_load(core, health), name="load-models")
    stopping = asyncio.create_task(stop.wait(), name="stop-signal")
    await asyncio.wait({stopping, http_task}, return_when=asyncio.FIRST_COMPLETED)
    failed = http_task.done() and not stop.is_set()  # e.g. uvicorn could not bind its port
    if failed:
        log.error("the HTTP server stopped unexpectedly; shutting down")
    stopping.cancel()
    await _shutdown(core, http, http_task, grpc_server, health, loader)
    return 1 if failed else 0


async def _shutdown(
    core: Core,
    http: _Uvicorn,
    http_task: asyncio.Task[None],
    grpc_server: grpc.aio.Server,
    health: ReadinessHealthServicer,
    loader: asyncio.Task[None],
) -> None:
    s = core.settings
    core.state.draining = True
    health.set_serving(False)
    log.info("draining: not ready; closing listeners in %.1fs", s.drain_delay_s)
    await asyncio.sleep(s.drain_delay_s)
    if not loader.done():
        loader.cancel()
    http.should_exit = True
    await asyncio.gather(
        grpc_server.stop(grace=s.shutdown_grace_s),
        asyncio.wait_for(http_task, s.shutdown_grace_s + 5),
        return_exceptions=True,
    )
    await stop_core(core, timeout_s=s.shutdown_grace_s)
    log.info("stopped")
