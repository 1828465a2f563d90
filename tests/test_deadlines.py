"""Deadlines, measured on the server's side: while rows are queued and while their batch runs,
in the service and through both transports.

Queued: every batch waits 1 s to fill (`slow_server`), so a request with a 0.3 s deadline expires
while its rows are queued. Without deadline propagation the server would keep the rows for its
own 30 s timeout: the client still gives up, but the server then counts a cancelled request (the
client left), not an expired one, and drops the rows as cancelled, not expired.

Running: ORT runs are held at a gate (the real run follows once it opens), so a deadline passes
while the batch runs. The request is answered at its deadline with the documented deadline error,
while the run is still going; the run is not interrupted (ORT cannot be) and its output for the
expired row is discarded and counted (`squeezeserve_rows_discarded_total{reason="expired"}`).
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from service.core import build_core, load_models, stop_core
from service.errors import ERROR_TABLE, DeadlineExceeded
from service.grpc.generated.squeezeserve.v1 import squeezeserve_pb2 as pb
from service.runtime.ort_runtime import OrtRuntime
from service.tasks.base import ClassifyParams, TextInput
from tests.harness import RunningServer, running_server, settings_for, wait_until

CLS = "sequence-classification"
SLOW_BATCHES = {"max_batch_delay_ms": 1000.0, "adaptive_batch_delay": False}
# Long enough for tokenizing and dispatching one short text on a busy machine (checked, not assumed).
RUN_DEADLINE_S = 1.0
DEADLINE = ERROR_TABLE[DeadlineExceeded.kind]  # the documented statuses


@pytest.fixture(scope="module")
def one_model(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("deadlines")
    shutil.copytree(store / CLS, root / CLS)
    return root


@pytest.fixture(scope="module")
def slow_server(one_model: Path) -> Iterator[RunningServer]:
    with running_server(settings_for(one_model, **SLOW_BATCHES)) as running:
        yield running


def _requests(server: RunningServer, transport: str, outcome: str) -> float:
    return server.metric("squeezeserve_requests_total", model=CLS, task=CLS, transport=transport, outcome=outcome)


def _rows(server: RunningServer, family: str, reason: str) -> float:
    return server.metric(f"squeezeserve_rows_{family}_total", model=CLS, reason=reason)


# ---- while queued ---------------------------------------------------------------------------


def test_a_grpc_deadline_expires_the_queued_rows_on_the_server(slow_server: RunningServer) -> None:
    before = (_requests(slow_server, "grpc", "expired"), _rows(slow_server, "dropped", "expired"))
    cancelled = (_requests(slow_server, "grpc", "cancelled"), _rows(slow_server, "dropped", "cancelled"))
    with slow_server.stubs() as (v1, _), pytest.raises(grpc.RpcError) as info:
        v1.Classify(pb.ClassifyRequest(inputs=[pb.TextInput(text=f"t{i}") for i in range(3)]), timeout=0.3)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    expired_rows = (before[0] + 1, before[1] + 3)  # dropped when the dispatcher wakes
    wait_until(
        lambda: (_requests(slow_server, "grpc", "expired"), _rows(slow_server, "dropped", "expired")) == expired_rows,
        what="the request counted as expired and its rows dropped as expired",
    )
    assert (_requests(slow_server, "grpc", "cancelled"), _rows(slow_server, "dropped", "cancelled")) == cancelled


def test_a_rest_timeout_header_expires_the_request_with_504(slow_server: RunningServer) -> None:
    before = (_requests(slow_server, "http", "expired"), _rows(slow_server, "dropped", "expired"))
    with slow_server.client() as client:
        response = client.post("/v1/classify", json={"inputs": ["a", "b"]}, headers={"X-Request-Timeout-S": "0.3"})
    assert response.status_code == DEADLINE.http and response.json()["error"]["type"] == DeadlineExceeded.kind
    assert _requests(slow_server, "http", "expired") == before[0] + 1
    wait_until(lambda: _rows(slow_server, "dropped", "expired") == before[1] + 2, what="rows dropped as expired")


def test_the_server_timeout_caps_a_longer_client_timeout(one_model: Path) -> None:
    settings = settings_for(one_model, request_timeout_s=0.3, **SLOW_BATCHES)
    with running_server(settings) as server, server.client() as client:
        response = client.post("/v1/classify", json={"inputs": "x"}, headers={"X-Request-Timeout-S": "3600"})
        assert response.status_code == DEADLINE.http
        assert _requests(server, "http", "expired") == 1


# ---- while the batch runs -------------------------------------------------------------------


class HeldRuns:
    """OrtRuntime.run held at a gate, then the real run: a batch runs for as long as the test says.

    A safety timer opens the gate in any case, so a server that waited for the run instead of
    answering at the deadline fails the test's checks (answered after the run) instead of hanging.
    """

    def __init__(self, gate: threading.Event, monkeypatch: pytest.MonkeyPatch) -> None:
        self.gate = gate
        self.started_at: float | None = None
        self.finished = threading.Event()
        original = OrtRuntime.run

        def held(runtime: OrtRuntime, feeds: Any) -> list[np.ndarray]:
            self.started_at = time.monotonic()
            try:
                assert gate.wait(30), "the gate never opened"
                return original(runtime, feeds)
            finally:
                self.finished.set()

        monkeypatch.setattr(OrtRuntime, "run", held)

    @property
    def running(self) -> bool:
        return self.started_at is not None and not self.finished.is_set()

    @contextmanager
    def opening_after(self, seconds: float) -> Iterator[None]:
        safety = threading.Timer(seconds, self.gate.set)
        safety.start()
        try:
            yield
        finally:
            safety.cancel()
            self.gate.set()


def test_a_deadline_that_passes_while_the_batch_runs_ends_the_request_in_the_service(
    one_model: Path, monkeypatch: pytest.MonkeyPatch, gate: threading.Event
) -> None:
    """Service level (DataPlane over a real model): DeadlineExceeded at the deadline, not after the run."""

    async def scenario() -> tuple[bool, float, dict[str, float]]:
        core = build_core(settings_for(one_model, max_batch_delay_ms=0.0, warmup=False))
        await load_models(core)
        runs = HeldRuns(gate, monkeypatch)
        sample = core.metrics.registry.get_sample_value
        try:
            with runs.opening_after(RUN_DEADLINE_S + 5):
                deadline = time.monotonic() + RUN_DEADLINE_S
                with pytest.raises(DeadlineExceeded), core.plane.call("test", CLS, None) as call:
                    await call.classify([TextInput("held at the gate")], ClassifyParams(), deadline)
                answered_while_running = runs.running
            while not sample("squeezeserve_batch_rows_count", {"model": CLS}):  # the run completes
                await asyncio.sleep(0.01)
            assert runs.started_at is not None
            labels = {"model": CLS, "task": CLS, "transport": "test", "outcome": "expired"}
            counts = {
                "requests_expired": sample("squeezeserve_requests_total", labels) or 0.0,
                "dropped": sample("squeezeserve_rows_dropped_total", {"model": CLS, "reason": "expired"}) or 0.0,
                "discarded": sample("squeezeserve_rows_discarded_total", {"model": CLS, "reason": "expired"}) or 0.0,
            }
            return answered_while_running, deadline - runs.started_at, counts
        finally:
            await stop_core(core, timeout_s=5)

    answered_while_running, run_started_before_deadline_s, counts = asyncio.run(scenario())
    assert run_started_before_deadline_s > 0, "the batch must start before the deadline (a slow machine?)"
    assert answered_while_running
    assert counts == {"requests_expired": 1.0, "dropped": 0.0, "discarded": 1.0}


@pytest.fixture(scope="module")
def timed_server(one_model: Path) -> Iterator[RunningServer]:
    """Batches go at once; every request has the server's own RUN_DEADLINE_S timeout."""
    settings = settings_for(one_model, max_batch_delay_ms=0.0, request_timeout_s=RUN_DEADLINE_S)
    with running_server(settings) as running:
        yield running


def _classify(server: RunningServer, transport: str) -> tuple[str, str]:
    """(status, error kind or message) as the server answered: the client waits far longer."""
    if transport == "http":
        with server.client() as client:
            response = client.post("/v1/classify", json={"inputs": "held at the gate"})
        return str(response.status_code), response.json()["error"]["type"]
    with server.stubs() as (v1, _), pytest.raises(grpc.RpcError) as info:
        v1.Classify(pb.ClassifyRequest(inputs=[pb.TextInput(text="held at the gate")]), timeout=30)
    return info.value.code().name, info.value.details() or ""


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_a_deadline_that_passes_while_the_batch_runs_is_answered_by_the_server(
    timed_server: RunningServer, transport: str, monkeypatch: pytest.MonkeyPatch, gate: threading.Event
) -> None:
    before = {
        "expired": _requests(timed_server, transport, "expired"),
        "dropped": _rows(timed_server, "dropped", "expired"),
        "discarded": _rows(timed_server, "discarded", "expired"),
        "batches": timed_server.metric("squeezeserve_batch_rows_count", model=CLS),
    }
    runs = HeldRuns(gate, monkeypatch)
    with runs.opening_after(RUN_DEADLINE_S + 5):
        status, detail = _classify(timed_server, transport)
        answered_while_running = runs.running
    assert answered_while_running, "answered at the deadline, while the batch still ran"
    if transport == "http":
        assert (status, detail) == (str(DEADLINE.http), DeadlineExceeded.kind)
    else:
        assert status == DEADLINE.grpc and "deadline" in detail
    wait_until(lambda: timed_server.metric("squeezeserve_batch_rows_count", model=CLS) == before["batches"] + 1)
    after = {
        "expired": _requests(timed_server, transport, "expired"),
        "dropped": _rows(timed_server, "dropped", "expired"),
        "discarded": _rows(timed_server, "discarded", "expired"),
    }
    # Counted as expired; not dropped from the queue (it was running); its output discarded.
    assert after == {
        "expired": before["expired"] + 1,
        "dropped": before["dropped"],
        "discarded": before["discarded"] + 1,
    }
