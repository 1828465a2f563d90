"""One process, one event loop: uvicorn (REST) and grpc.aio (gRPC) over one Core.

Startup: the API keys and TLS files are checked (a bad one: one error line, exit 2), listeners
open (liveness answers, readiness false; TLS on both when configured), then every model is loaded
and warmed, then ready. SIGHUP re-reads the API keys file. SIGTERM/SIGINT: readiness false and
gRPC health NOT_SERVING at once, wait drain_delay_s so load balancers stop sending, close the
listeners, let in-flight requests finish within shutdown_grace_s, drain the batchers, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
from collections.abc import Callable, Iterator

import grpc
import uvicorn

from service import tracing
from service.api.app import create_app
from service.config import Settings
from service.core import Core, build_core, load_models, stop_core
from service.grpc import SERVICE_NAMES, ReadinessHealthServicer, build_grpc_server
from service.security import ApiKeys, SecurityConfigError, TlsFiles, load_api_keys, load_tls

log = logging.getLogger(__name__)


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the lifecycle below decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _http_server(core: Core, api_keys: ApiKeys | None, tls: TlsFiles | None) -> _Uvicorn:
    s = core.settings
    ssl_options: dict[str, object] = {}
    if tls is not None:
        ssl_options = {"ssl_certfile": tls.cert_file, "ssl_keyfile": tls.key_file}
        if tls.client_ca_file is not None:
            ssl_options.update(ssl_ca_certs=str(tls.client_ca_file), ssl_cert_reqs=ssl.CERT_REQUIRED)
    config = uvicorn.Config(
        create_app(core, api_keys),
        host=s.host,
        port=s.http_port,
        log_level=s.log_level,
        access_log=False,  # our access log (service/logs.py) knows the request id, model and timings
        log_config=None,  # uvicorn's loggers propagate to the root handler (text or JSON)
        lifespan="off",
        timeout_graceful_shutdown=int(max(1, s.shutdown_grace_s)),
        **ssl_options,  # type: ignore[arg-type]
    )
    return _Uvicorn(config)


def _on_signals(stop: asyncio.Event, api_keys: ApiKeys | None) -> None:
    loop = asyncio.get_running_loop()
    handlers: dict[signal.Signals, Callable[[], object]] = {signal.SIGTERM: stop.set, signal.SIGINT: stop.set}
    if api_keys is not None:
        handlers[signal.SIGHUP] = api_keys.reload
    for sig, handler in handlers.items():
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not main thread / platform
            loop.add_signal_handler(sig, handler)


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


def _prepare_edges(settings: Settings) -> tuple[ApiKeys | None, TlsFiles | None] | None:
    """API keys, TLS files and tracing, before any port opens; None (and one error line): cannot start."""
    try:
        api_keys, tls = load_api_keys(settings), load_tls(settings)
        if tracing.requested():
            tracing.start()
    except SecurityConfigError as exc:
        log.error("cannot start: %s", exc)
        return None
    except ImportError as exc:
        log.error(
            "cannot start: OTLP tracing is configured but %s is missing: pip install 'squeezeserve[otel]'", exc.name
        )
        return None
    return api_keys, tls


def _log_listening(settings: Settings, grpc_port: int, api_keys: ApiKeys | None, tls: TlsFiles | None) -> None:
    scheme = "plaintext" if tls is None else "mTLS" if tls.requires_client_cert else "TLS"
    auth = "off" if api_keys is None else f"{api_keys.count} key(s)"
    s = settings
    log.info(
        "listening: http %s:%d, grpc %s:%d (%s, API keys %s)", s.host, s.http_port, s.host, grpc_port, scheme, auth
    )


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> int:
    """Run until `stop` is set (or SIGTERM/SIGINT); returns the process exit code."""
    stop = stop or asyncio.Event()
    edges = _prepare_edges(settings)
    if edges is None:
        return 2
    api_keys, tls = edges
    _on_signals(stop, api_keys)
    core = build_core(settings)
    health = ReadinessHealthServicer(core.state, SERVICE_NAMES)
    try:
        grpc_server, grpc_port = build_grpc_server(core, health_servicer=health, api_keys=api_keys, tls=tls)
    except RuntimeError as exc:  # grpc raises this when the port cannot be bound
        log.error("cannot listen for gRPC on %s:%d: %s", settings.host, settings.grpc_port, exc)
        return 1
    http = _http_server(core, api_keys, tls)
    await grpc_server.start()
    http_task = asyncio.create_task(http.serve(), name="http")
    _log_listening(settings, grpc_port, api_keys, tls)
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
    tracing.stop()  # flushes the spans still queued for export
    log.info("stopped")
