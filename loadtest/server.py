"""A real `python -m service serve` subprocess on free 127.0.0.1 ports, as a context manager.

    with ServerProcess(store, env={"SQZ_MAX_BATCH_DELAY_MS": "2"}) as server:
        server.http_url  # http://127.0.0.1:PORT
        server.grpc_target  # 127.0.0.1:PORT
        server.pid

Waits for /readyz (200) on entry; on exit sends SIGTERM, waits, and kills only if it hangs.
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
from pathlib import Path
from types import TracebackType

REPO = Path(__file__).resolve().parent.parent


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
    ) -> None:
        self.store = Path(store)
        self.extra_env = dict(env or {})
        self.ready_timeout_s = ready_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.log_path = log_path
        self.python = python
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

    def start(self) -> None:
        env = {**os.environ, "SQZ_DRAIN_DELAY_S": "0", "SQZ_SHUTDOWN_GRACE_S": "5", **self.extra_env}
        command = [
            self.python, "-m", "service", "serve", "--store", str(self.store), "--host", "127.0.0.1",
            "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port),
        ]  # fmt: skip
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode} before it was ready")
            if http_status(f"{self.http_url}/readyz") == 200:
                return
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"server not ready within {self.ready_timeout_s:.0f} s")

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
