"""`squeezeserve serve` as a real process: startup, readiness, SIGTERM drain with requests in flight."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from loadtest.server import ServerProcess, free_port, serve_command, server_env
from service.grpc.generated.squeezeserve.v1 import squeezeserve_pb2 as pb
from service.grpc.generated.squeezeserve.v1 import squeezeserve_pb2_grpc

CONTEXT = " ".join(["The committee met in Vienna to discuss the treaty and its many clauses."] * 30)


def _health(port: int) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return int(stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status)


def _metric(url: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def _wait_for(
    predicate: Callable[[], bool], timeout_s: float, what: str, detail: Callable[[], str] = lambda: ""
) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not seen within {timeout_s}s {detail()}"
        time.sleep(0.05)


QUESTION = "Where did the committee meet?"
LONG_CONTEXT = " ".join(["The committee met in Vienna to discuss the treaty and its many clauses."] * 1000)


def test_sigterm_serves_through_the_drain_delay_and_finishes_in_flight_work(store: Path, tmp_path: Path) -> None:
    """Signal only once the server itself counts the requests in flight (REST and gRPC); requests
    that arrive during the drain delay are served (issue 13, #10); nothing fails; exit 0."""
    drain_s = 5.0
    env = {
        "SQZ_DRAIN_DELAY_S": str(drain_s),
        "SQZ_SHUTDOWN_GRACE_S": "20",
        "SQZ_SESSION_INSTANCES": "1",
        "SQZ_INTRA_OP_THREADS": "1",
        # One row per batch and ~250 windows per request: seconds of queued work, so the 12
        # requests are surely in flight together when the signal comes.
        "SQZ_MAX_BATCH_SIZE": "1",
        "SQZ_MAX_QUEUED_ROWS": "100000",
    }
    log = tmp_path / "server.log"
    server = ServerProcess(store, env=env, log_path=log, stop_timeout_s=60)
    with server:
        url = server.http_url
        assert _health(server.grpc_port) == health_pb2.HealthCheckResponse.SERVING
        outcomes: list[str] = []

        def ask_rest() -> None:
            body = {"inputs": {"question": QUESTION, "context": LONG_CONTEXT}, "parameters": {"doc_stride": 300}}
            outcomes.append(str(httpx.post(f"{url}/v1/answer", json=body, timeout=60).status_code))

        def ask_grpc() -> None:
            with grpc.insecure_channel(server.grpc_target) as channel:
                stub = squeezeserve_pb2_grpc.InferenceStub(channel)
                inputs = [pb.QAInput(question=QUESTION, context=LONG_CONTEXT)]
                request = pb.AnswerRequest(inputs=inputs, parameters=pb.AnswerParameters(doc_stride=300))
                outcomes.append("200" if stub.Answer(request, timeout=60).results else "empty")

        threads = [threading.Thread(target=ask_rest) for _ in range(8)]
        threads += [threading.Thread(target=ask_grpc) for _ in range(4)]
        for t in threads:
            t.start()
        seen: list[tuple[float, float]] = []

        def all_in_flight() -> bool:
            seen.append(tuple(_metric(url, "squeezeserve_requests_in_flight", transport=t) for t in ("http", "grpc")))
            return seen[-1] == (8, 4)

        _wait_for(
            all_in_flight,
            60,
            "12 requests in flight",
            lambda: f"outcomes so far {outcomes}; seen {seen}",
        )
        assert server.process is not None
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        _wait_for(lambda: httpx.get(f"{url}/readyz", timeout=5).status_code == 503, 5, "readiness off")
        assert httpx.get(f"{url}/readyz", timeout=5).json() == {"status": "draining"}
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        assert _health(server.grpc_port) == health_pb2.HealthCheckResponse.NOT_SERVING
        # New requests during the drain delay, on new connections: served, not 503.
        late = httpx.post(f"{url}/v1/classify", json={"inputs": "arrived while draining"}, timeout=30)
        assert late.status_code == 200, late.text
        with grpc.insecure_channel(server.grpc_target) as channel:
            late_grpc = squeezeserve_pb2_grpc.InferenceStub(channel).Classify(
                pb.ClassifyRequest(inputs=[pb.TextInput(text="late too")]), timeout=30
            )
        assert len(late_grpc.results) == 1
        assert time.monotonic() - signalled < drain_s, "the late requests must have arrived within the drain delay"
        for t in threads:
            t.join(timeout=60)
        assert sorted(outcomes) == ["200"] * 12  # every in-flight request was answered
        assert server.process.wait(timeout=60) == 0
        assert time.monotonic() - signalled < drain_s + 20.0
    text = log.read_text()
    assert "draining" in text and "stopped" in text


def test_shutdown_takes_at_most_the_drain_delay_plus_one_grace_period(store: Path, tmp_path: Path) -> None:
    """Far more queued work than the grace period allows: the process still exits within
    drain_delay_s + shutdown_grace_s (+ the batcher's 1 s abandon wait and process teardown)."""
    drain_s, grace_s = 0.5, 1.0
    env = {
        "SQZ_DRAIN_DELAY_S": str(drain_s),
        "SQZ_SHUTDOWN_GRACE_S": str(grace_s),
        "SQZ_SESSION_INSTANCES": "1",
        "SQZ_INTRA_OP_THREADS": "1",
        "SQZ_MAX_BATCH_SIZE": "1",
        "SQZ_MAX_QUEUED_ROWS": "100000",
    }
    server = ServerProcess(store, env=env, log_path=tmp_path / "server.log", stop_timeout_s=60)
    with server:
        url = server.http_url
        body = {"inputs": {"question": QUESTION, "context": LONG_CONTEXT}, "parameters": {"doc_stride": 300}}
        threads = [
            threading.Thread(target=lambda: httpx.post(f"{url}/v1/answer", json=body, timeout=60)) for _ in range(16)
        ]
        for t in threads:
            t.start()
        _wait_for(lambda: _metric(url, "squeezeserve_queue_rows", model="question-answering") > 100, 60, "a deep queue")
        assert server.process is not None
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=60) == 0
        elapsed = time.monotonic() - signalled
        for t in threads:
            t.join(timeout=10)
    assert elapsed < drain_s + grace_s + 2.0, f"shutdown took {elapsed:.1f}s"


def test_time_to_ready_is_reported_per_model_and_phase_and_since_process_start(store: Path, tmp_path: Path) -> None:
    """Cold start is measured where it happens: the server's own log and /metrics say where it went."""
    log = tmp_path / "server.log"
    with ServerProcess(store, log_path=log) as server:
        age = _metric(server.http_url, "squeezeserve_time_to_ready_seconds")
        phases = {
            (model, phase): _metric(server.http_url, "squeezeserve_model_load_seconds", model=model, phase=phase)
            for model in ("sequence-classification", "token-classification", "question-answering")
            for phase in ("open", "warm_up", "start")
        }
    assert all(seconds > 0 for seconds in phases.values()), phases
    # The process's age at ready covers interpreter start-up and imports, so it exceeds the models' sum.
    assert age > sum(phases.values()), (age, phases)
    text = log.read_text()
    assert "model question-answering ready in" in text and "warm_up" in text
    assert "s after the process started" in text


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
        env = server_env({"SQZ_DRAIN_DELAY_S": "0", "SQZ_WARMUP": "false"}, isolated=True)
        result = subprocess.run(
            serve_command(store, port, free_port()), env=env, capture_output=True, text=True, timeout=120
        )
    assert result.returncode == 1  # one clear line, not uvicorn's sys.exit(3) from inside a task
    assert "cannot listen for HTTP" in result.stderr and "address already in use" in result.stderr.lower()
    assert "Traceback" not in result.stderr
