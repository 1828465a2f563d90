"""Real REST servers for the tests: uvicorn on 127.0.0.1 (free port) in a thread with its own loop.

Test modules load this as a plugin (`pytest_plugins = ["tests.rest_support"]`) so the session
servers are shared, and import from it only under TYPE_CHECKING (a runtime import would come
before pytest's plugin import and cost the module its assertion rewriting).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from service.config import Settings
from service.core import Core, build_core, load_models, stop_core
from service.server import http_config

T = TypeVar("T")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


@dataclass
class RunningServer:
    url: str
    core: Core
    loop: asyncio.AbstractEventLoop
    port: int

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0, **kwargs)

    def call(self, make: Callable[[], Coroutine[Any, Any, T]], timeout_s: float = 30.0) -> T:
        """Run a coroutine on the server's loop (the core's objects belong to it)."""
        return asyncio.run_coroutine_threadsafe(make(), self.loop).result(timeout_s)

    def metric(self, name: str, **labels: str) -> float:
        """One sample's value from /metrics (0 when the series does not exist yet)."""
        text = httpx.get(self.url + "/metrics", timeout=10.0).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return float(sample.value)
        return 0.0

    @staticmethod
    def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0, interval_s: float = 0.02) -> bool:
        """Poll until true or timed out; returns the last answer."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(interval_s)
        return predicate()


def settings_for(store: Path, **overrides: Any) -> Settings:
    return Settings(**{"store_dir": store, "session_instances": 1, "intra_op_threads": 1, **overrides})


def single_model_store(store: Path, target: Path, name: str = "sequence-classification") -> Path:
    """A store holding one model: dedicated servers load faster."""
    if not (target / name).exists():
        shutil.copytree(store / name, target / name)
    return target


@contextmanager
def running_server(settings: Settings, load: bool = True) -> Iterator[RunningServer]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    holder: dict[str, Any] = {}
    ready = threading.Event()

    async def main() -> None:
        core = build_core(settings)
        if load:
            await load_models(core)
        config = http_config(core, log_level="warning", timeout_graceful_shutdown=5)
        server = uvicorn.Server(config)
        holder.update(core=core, server=server, loop=asyncio.get_running_loop())
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        ready.set()
        try:
            await serving
        finally:
            await stop_core(core, timeout_s=5.0)

    thread = threading.Thread(target=lambda: _run_logged(main, holder), name=f"uvicorn-{port}", daemon=True)
    thread.start()
    try:
        _wait_started(ready, holder)
        yield RunningServer(f"http://127.0.0.1:{port}", holder["core"], holder["loop"], port)
    finally:
        if "server" in holder:
            holder["server"].should_exit = True
        thread.join(STOP_TIMEOUT_S)
        sock.close()


def _run_logged(main: Callable[[], Coroutine[Any, Any, None]], holder: dict[str, Any]) -> None:
    try:
        asyncio.run(main())
    except BaseException as exc:  # surfaced by _wait_started instead of dying silently in a thread
        holder["error"] = exc


def _wait_started(ready: threading.Event, holder: dict[str, Any]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if "error" in holder:
            raise RuntimeError("server failed to start") from holder["error"]
        if ready.is_set() and holder["server"].started:
            return
        time.sleep(0.02)
    raise TimeoutError("server did not start in time")


# ---- fixtures (test modules load this file with `pytest_plugins = ["tests.rest_support"]`) -------


@pytest.fixture(scope="session")
def rest_server(store: Path) -> Iterator[RunningServer]:
    """All three models, default settings."""
    with running_server(settings_for(store)) as server:
        yield server


@pytest.fixture(scope="session")
def tight_server(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One classifier, a one-row queue and a fixed 1 s batch delay: overload and disconnects are reproducible."""
    one = single_model_store(store, tmp_path_factory.mktemp("one-model"))
    settings = settings_for(one, max_queued_rows=1, max_batch_delay_ms=1000.0, adaptive_batch_delay=False)
    with running_server(settings) as server:
        yield server


@pytest.fixture
def client(rest_server: RunningServer) -> Iterator[httpx.Client]:
    with rest_server.client() as c:
        yield c
