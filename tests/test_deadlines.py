"""Client deadlines reach the server: measured on the server's side, over gRPC and REST.

Every batch waits 1 s to fill here, so a request with a 0.3 s deadline expires while its rows
are queued. Without deadline propagation the server would keep the rows for its own 30 s
timeout: the client still gives up, but the server then counts a cancelled request (the client
left), not an expired one, and drops the rows as cancelled, not expired.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from service.grpc.generated.squeezeserve.v1 import squeezeserve_pb2 as pb
from tests.harness import RunningServer, running_server, settings_for, wait_until

CLS = "sequence-classification"
SLOW_BATCHES = {"max_batch_delay_ms": 1000.0, "adaptive_batch_delay": False}


@pytest.fixture(scope="module")
def one_model(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("deadlines")
    shutil.copytree(store / CLS, root / CLS)
    return root


@pytest.fixture(scope="module")
def slow_server(one_model: Path) -> Iterator[RunningServer]:
    with running_server(settings_for(one_model, **SLOW_BATCHES)) as running:
        yield running


def test_a_grpc_deadline_expires_the_queued_rows_on_the_server(slow_server: RunningServer) -> None:
    expired = {"model": CLS, "task": CLS, "transport": "grpc", "outcome": "expired"}
    before = slow_server.metric("squeezeserve_requests_total", **expired)
    with slow_server.stubs() as (v1, _), pytest.raises(grpc.RpcError) as info:
        v1.Classify(pb.ClassifyRequest(inputs=[pb.TextInput(text=f"t{i}") for i in range(3)]), timeout=0.3)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_until(
        lambda: slow_server.metric("squeezeserve_requests_total", **expired) == before + 1, what="counted as expired"
    )
    assert (
        slow_server.metric("squeezeserve_requests_total", model=CLS, task=CLS, transport="grpc", outcome="cancelled")
        == 0
    )


def test_a_rest_timeout_header_expires_the_request_with_504(slow_server: RunningServer) -> None:
    expired = {"model": CLS, "task": CLS, "transport": "http", "outcome": "expired"}
    before = slow_server.metric("squeezeserve_requests_total", **expired)
    with slow_server.client() as client:
        response = client.post("/v1/classify", json={"inputs": ["a", "b"]}, headers={"X-Request-Timeout-S": "0.3"})
    assert response.status_code == 504
    assert slow_server.metric("squeezeserve_requests_total", **expired) == before + 1


def test_the_server_timeout_caps_a_longer_client_timeout(one_model: Path) -> None:
    expired = {"model": CLS, "task": CLS, "transport": "http", "outcome": "expired"}
    settings = settings_for(one_model, request_timeout_s=0.3, **SLOW_BATCHES)
    with running_server(settings) as server, server.client() as client:
        response = client.post("/v1/classify", json={"inputs": "x"}, headers={"X-Request-Timeout-S": "3600"})
        assert response.status_code == 504
        assert server.metric("squeezeserve_requests_total", **expired) == 1
