"""`squeezeserve serve` as a real process: startup, readiness, SIGTERM drain with requests in flight."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

CONTEXT = " ".join(["The committee met in Vienna to discuss the treaty and its many clauses."] * 30)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[str], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"server exited early: {proc.stderr.read() if proc.stderr else ''}"
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("server never became ready")


def _health(port: int) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return int(stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status)


def test_sigterm_drains_in_flight_requests_and_exits_zero(store: Path) -> None:
    http_port, grpc_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "SQZ_DRAIN_DELAY_S": "1.0",
        "SQZ_SHUTDOWN_GRACE_S": "20",
        "SQZ_SESSION_INSTANCES": "1",
        "SQZ_INTRA_OP_THREADS": "1",
        "SQZ_MAX_BATCH_SIZE": "2",
    }
    command = [sys.executable, "-m", "service", "serve", "--store", str(store)]
    command += ["--http-port", str(http_port), "--grpc-port", str(grpc_port)]
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{http_port}"
    try:
        _wait_ready(url, proc)
        assert _health(grpc_port) == health_pb2.HealthCheckResponse.SERVING
        statuses: list[int] = []

        def ask() -> None:
            body = {"inputs": {"question": "Where did the committee meet?", "context": CONTEXT}}
            statuses.append(httpx.post(f"{url}/v1/answer", json=body, timeout=60).status_code)

        threads = [threading.Thread(target=ask) for _ in range(12)]
        for t in threads:
            t.start()
        time.sleep(0.3)  # requests are queued or running
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert httpx.get(f"{url}/readyz", timeout=5).status_code == 503  # readiness flips at once
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        assert _health(grpc_port) == health_pb2.HealthCheckResponse.NOT_SERVING
        for t in threads:
            t.join(timeout=60)
        assert statuses == [200] * 12  # every in-flight request was answered
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = proc.stderr.read() if proc.stderr else ""
    assert "draining" in log and "stopped" in log


def test_serving_process_never_imports_torch(store: Path) -> None:
    code = (
        "import sys\n"
        "import service.server, service.api.app, service.grpc.server, service.cli\n"
        "leaked = sorted(m for m in ('torch', 'transformers', 'onnx') if m in sys.modules)\n"
        "print('LEAKED', leaked)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "LEAKED []" in result.stdout, result.stdout + result.stderr


def test_an_occupied_port_fails_fast_instead_of_hanging(store: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "service", "serve", "--store", str(store)]
        command += ["--http-port", str(port), "--grpc-port", str(_free_port())]
        env = {**os.environ, "SQZ_DRAIN_DELAY_S": "0", "SQZ_WARMUP": "false"}
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "address already in use" in result.stderr.lower() or "could not bind" in result.stderr.lower()
