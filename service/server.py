"""One process, one event loop: uvicorn (REST) and grpc.aio (gRPC) over one Core.

Startup: the API keys and TLS files are checked (a bad one: one error line, exit 2), both ports
are bound (a taken port: one log line, exit 1), listeners open (liveness answers, readiness
false; TLS on both when configured), then every store entry is loaded and warmed on its own,
then ready. SIGHUP re-reads the API keys file. SIGTERM/SIGINT: readiness false and gRPC health
NOT_SERVING at once while requests are still served for drain_delay_s (load balancers notice);
then the listeners close, new work is refused, and everything in flight (HTTP, gRPC, the
batchers) shares ONE shutdown_grace_s budget. Worst case from the signal to exit:
drain_delay_s + shutdown_grace_s (+ the batcher's one-second abandon wait when work had to be
abandoned).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import uvicorn

from service import tracing
from service.api.app import create_app
from service.api.connection import bounded_protocol
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


def http_config(
    core: Core, api_keys: ApiKeys | None = None, tls: TlsFiles | None = None, **overrides: Any
) -> uvicorn.Config:
    """uvicorn's configuration: the app, TLS, the slow-client bounds and header limits."""
    s = core.settings
    options: dict[str, Any] = {}
    if tls is not None:
        options = {"ssl_certfile": tls.cert_file, "ssl_keyfile": tls.key_file}
        if tls.client_ca_file is not None:
            options.update(ssl_ca_certs=str(tls.client_ca_file), ssl_cert_reqs=ssl.CERT_REQUIRED)
    options.update(
        host=s.host,
        port=s.http_port,
        log_level=s.log_level,
        access_log=False,  # our access log (service/logs.py) knows the request id, model and timings
        log_config=None,  # uvicorn's loggers propagate to the root handler (text or JSON)
        lifespan="off",
        # The raw head (request line, names, values, framing) may take twice the headers' limit:
        # every head the middleware would accept fits, and the middleware answers the rest it sees.
        http=bounded_protocol(s.receive_timeout_s, max_head_bytes=2 * s.max_header_bytes),
        timeout_keep_alive=max(1, round(s.keep_alive_timeout_s)),
        timeout_graceful_shutdown=max(1, round(s.shutdown_grace_s)),
    )
    return uvicorn.Config(create_app(core.plane, api_keys), **{**options, **overrides})


def bind_http_socket(host: str, port: int) -> socket.socket:
    """The HTTP listening socket, bound here so that a taken port is an OSError we report, not
    uvicorn's sys.exit from inside a task."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only when the socket
    # says TCP. Without it Nagle's algorithm held every keep-alive response's second segment for
    # the client's delayed ACK: ~40 ms per request (a lone caller at 32 tokens: 9 -> 50 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # not REUSEPORT: a taken port fails
        sock.bind((host.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


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
    except Exception:  # a bug in the registry itself (entries fail on their own): loud, not ready
        log.exception("loading models failed; staying not-ready")
        return
    await health.sync()  # Watch streams learn that the models are ready
    statuses = core.plane.models()
    failed = [f"{s.name} ({s.reason})" for s in statuses if s.state == "failed"]
    if failed:
        log.error("failed model(s): %s", "; ".join(failed))
    readiness = core.plane.readiness()
    if readiness == "ready":
        age = process_age_s()
        if age is not None:
            core.metrics.time_to_ready.set(age)
        since = f" {age:.2f}s after the process started" if age is not None else ""
        log.info("ready%s: %s", since, ", ".join(s.name for s in statuses if s.state == "ready"))
    else:
        log.error("not ready (%s) after loading %s", readiness, core.settings.store_dir)


def process_age_s() -> float | None:
    """Seconds since this process started (Linux /proc), interpreter start-up and imports included."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat, open("/proc/uptime", encoding="ascii") as uptime:
            started_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
            return float(uptime.read().split()[0]) - started_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


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


def _log_listening(
    settings: Settings, http_port: int, grpc_port: int, api_keys: ApiKeys | None, tls: TlsFiles | None
) -> None:
    scheme = "plaintext" if tls is None else "mTLS" if tls.requires_client_cert else "TLS"
    auth = "off" if api_keys is None else f"{api_keys.count} key(s)"
    s = settings
    log.info("listening: http %s:%d, grpc %s:%d (%s, API keys %s)", s.host, http_port, s.host, grpc_port, scheme, auth)


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> int:
    """Run until `stop` is set (or SIGTERM/SIGINT); returns the process exit code."""
    stop = stop or asyncio.Event()
    edges = _prepare_edges(settings)
    if edges is None:
        return 2
    api_keys, tls = edges
    _on_signals(stop, api_keys)
    try:
        http_socket = bind_http_socket(settings.host, settings.http_port)
    except OSError as exc:
        log.error("cannot listen for HTTP on %s:%d: %s", settings.host, settings.http_port, exc.strerror or exc)
        return 1
    core = build_core(settings)
    health = ReadinessHealthServicer(core.plane, SERVICE_NAMES)
    try:
        grpc_server, grpc_port = build_grpc_server(core.plane, health_servicer=health, api_keys=api_keys, tls=tls)
    except RuntimeError as exc:  # grpc raises this when the port cannot be bound
        log.error("cannot listen for gRPC on %s:%d: %s", settings.host, settings.grpc_port, exc)
        http_socket.close()
        return 1
    http = _Uvicorn(http_config(core, api_keys, tls))
    await grpc_server.start()
    http_task = asyncio.create_task(http.serve(sockets=[http_socket]), name="http")
    _log_listening(settings, http_socket.getsockname()[1], grpc_port, api_keys, tls)
    loader = asyncio.create_task(_load(core, health), name="load-models")
    stopping = asyncio.create_task(stop.wait(), name="stop-signal")
    await asyncio.wait({stopping, http_task}, return_when=asyncio.FIRST_COMPLETED)
    failed = http_task.done() and not stop.is_set()
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
    core.plane.begin_drain()  # not ready, still serving: load balancers notice and move away
    health.set_serving(False)
    log.info("draining: not ready; serving until the listeners close in %.1fs", s.drain_delay_s)
    await asyncio.sleep(s.drain_delay_s)
    if not loader.done():
        loader.cancel()
    deadline = time.monotonic() + s.shutdown_grace_s  # ONE budget for everything below
    http.should_exit = True  # uvicorn closes its listener and idle connections; grpc stop() refuses new RPCs
    await asyncio.gather(
        grpc_server.stop(grace=s.shutdown_grace_s),
        asyncio.wait_for(http_task, s.shutdown_grace_s),
        return_exceptions=True,
    )
    core.plane.stop_accepting()  # a straggler after the listeners closed gets 503, not a dead queue
    await stop_core(core, timeout_s=max(0.0, deadline - time.monotonic()))
    tracing.stop()  # flushes the spans still queued for export
    log.info("stopped")
