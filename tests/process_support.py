"""`squeezeserve serve` as a real process on free 127.0.0.1 ports, importing this checkout."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def command(store: Path, http_port: int, grpc_port: int) -> list[str]:
    return [sys.executable, "-m", "service", "serve", "--store", str(store)] + [
        "--http-port", str(http_port), "--grpc-port", str(grpc_port),
    ]  # fmt: skip


def server_env(**settings: str) -> dict[str, str]:
    """This environment with the checkout first on the path and the given SQZ_* settings."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SQZ_", "OTEL_"))}
    return {**base, "PYTHONPATH": path, "SQZ_SESSION_INSTANCES": "1", "SQZ_INTRA_OP_THREADS": "1", **settings}


@contextmanager
def server_process(
    store: Path, log_path: Path, ready: Callable[[ServerProcess], bool], **settings: str
) -> Iterator[ServerProcess]:
    """Start, wait until `ready(server)` (bounded), yield; SIGTERM and wait on the way out."""
    http_port, grpc_port = free_port(), free_port()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command(store, http_port, grpc_port), env=server_env(**settings), stderr=log)
    server = ServerProcess(proc, http_port, grpc_port, log_path)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _ready(server, ready):
            assert proc.poll() is None, f"server exited early:\n{server.log()}"
            assert time.monotonic() < deadline, f"server not ready in {START_TIMEOUT_S}s:\n{server.log()}"
            time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _ready(server: ServerProcess, ready: Callable[[ServerProcess], bool]) -> bool:
    try:
        return ready(server)
    except Exception:  # connection refused etc. while starting
        return False
