"""THE real `python -m service serve` subprocess on free 127.0.0.1 ports, for load tests and tests.

    with ServerProcess(store, env={"SQZ_MAX_BATCH_DELAY_MS": "2"}) as server:
        server.http_url  # http://127.0.0.1:PORT
        server.grpc_target  # 127.0.0.1:PORT
        server.pid

Waits until the server is ready (default: /readyz answers 200; `ready` may ask otherwise, e.g.
over TLS) on entry; on exit sends SIGTERM, waits, and kills only if it hangs. The tests start
their server processes here too (tests/harness.py is the in-process one); this module imports
nothing from the tests.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

REPO = Path(__file__).resolve().parent.parent
# What every ServerProcess runs with unless its env says otherwise: a stop need not wait for a
# load balancer, and a hung run is killed rather than waited on for the default 30 s.
LIFECYCLE_DEFAULTS = {"SQZ_DRAIN_DELAY_S": "0", "SQZ_SHUTDOWN_GRACE_S": "5"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_status(url: str, timeout_s: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (127.0.0.1 only)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return 0


def serve_command(store: Path, http_port: int, grpc_port: int, python: str = sys.executable) -> list[str]:
    return [
        python, "-m", "service", "serve", "--store", str(store), "--host", "127.0.0.1",
        "--http-port", str(http_port), "--grpc-port", str(grpc_port),
    ]  # fmt: skip


def server_env(settings: Mapping[str, str] | None = None, isolated: bool = False) -> dict[str, str]:
    """This process's environment with REPO first on the path and `settings` on top.

    isolated: drop the SQZ_* and OTEL_* variables this process has, so that only `settings`
    configure the server (tests); otherwise an operator's SQZ_* variables reach it (load tests).
    """
    base = dict(os.environ)
    if isolated:
        base = {k: v for k, v in base.items() if not k.startswith(("SQZ_", "OTEL_"))}
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**base, "PYTHONPATH": path, **(settings or {})}


class ServerProcess:
    """Starts the server with `env` (SQZ_* overrides) on top of this process's environment."""

    def __init__(
        self,
        store: Path,
        env: dict[str, str] | None = None,
        ready_timeout_s: float = 180.0,
        stop_timeout_s: float = 20.0,
        log_path: Path | None = None,
        python: str = sys.executable,
        ready: Callable[[ServerProcess], bool] | None = None,
        isolated: bool = False,
        repo: Path = REPO,
    ) -> None:
        self.store = Path(store)
        self.repo = Path(repo)  # the checkout whose `service` runs (another worktree: another commit)
        self.extra_env = dict(env or {})
        self.ready_timeout_s = ready_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.log_path = log_path
        self.python = python
        self.ready = ready or (lambda server: http_status(f"{server.http_url}/readyz") == 200)
        self.isolated = isolated
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, "server not started"
        return self.process.pid

    def log(self) -> str:
        """What the server wrote (stdout and stderr), when it has a log_path."""
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def start(self) -> None:
        env = server_env({**LIFECYCLE_DEFAULTS, **self.extra_env}, isolated=self.isolated)
        command = serve_command(self.store, self.http_port, self.grpc_port, self.python)
        if self.log_path is None:
            self.process = subprocess.Popen(
                command, cwd=self.repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
            )
        else:
            with self.log_path.open("wb") as log:  # the child keeps its own descriptor
                self.process = subprocess.Popen(command, cwd=self.repo, env=env, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _is_ready(self) -> bool:
        try:
            return self.ready(self)
        except Exception:  # connection refused, TLS handshake on a closed port, ... while starting
            return False

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode} before it was ready:\n{self.log()}")
            if self._is_ready():
                return
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"server not ready within {self.ready_timeout_s:.0f} s:\n{self.log()[-4000:]}")

    def stop(self) -> int | None:
        if self.process is None or self.returncode is not None:
            return self.returncode
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.returncode = self.process.returncode
        return self.returncode

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
