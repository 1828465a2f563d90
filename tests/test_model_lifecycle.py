"""Per-model lifecycle through the real servers: broken entries fail alone and say why, everywhere."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.grpc.generated.inference import grpc_service_pb2 as ipb
from service.grpc.generated.squeezeserve.v1 import squeezeserve_pb2 as pb
from tests.harness import RunningServer, running_server, settings_for

CLS = "sequence-classification"
CORRUPT, WARMUP_FAILS = "b-corrupt", "a-warmup-fails"


@pytest.fixture(scope="module")
def mixed_store(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One good entry, one with a corrupt manifest, one whose warm-up fails in ORT for real (its
    manifest claims 4096 positions; the graph has 512). Sorted first, the failing entry used to
    abort the whole load and leave every model 'still loading' for ever."""
    root = tmp_path_factory.mktemp("mixed")
    shutil.copytree(store / CLS, root / CLS)
    shutil.copytree(store / CLS, root / CORRUPT)
    (root / CORRUPT / "manifest.json").write_text("{ not json")
    shutil.copytree(store / CLS, root / WARMUP_FAILS)
    manifest = root / WARMUP_FAILS / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "name": WARMUP_FAILS, "max_seq_len": 4096}))
    return root


@pytest.fixture(scope="module")
def mixed_server(mixed_store: Path) -> Iterator[RunningServer]:
    # Two sessions per model: the pool of runners is exercised through the real server too.
    with running_server(settings_for(mixed_store, session_instances=2)) as server:
        yield server


def test_the_good_model_is_served_and_the_bad_ones_are_listed_as_failed(mixed_server: RunningServer) -> None:
    with mixed_server.client() as client:
        assert client.get("/readyz").json() == {"status": "ready"}
        models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
        assert {name: m["state"] for name, m in models.items()} == {
            WARMUP_FAILS: "failed",
            CORRUPT: "failed",
            CLS: "ready",
        }
        assert "unreadable manifest" in models[CORRUPT]["reason"] and models[CORRUPT]["task"] == ""
        assert models[WARMUP_FAILS]["reason"] and models[WARMUP_FAILS]["task"] == CLS
        assert not models[WARMUP_FAILS]["ready"] and models[CLS]["ready"]
        ready = client.get(f"/v2/models/{WARMUP_FAILS}/ready")
        assert ready.status_code == 503 and ready.json() == {"name": WARMUP_FAILS, "ready": False}
        assert client.get(f"/v2/models/{CLS}/ready").status_code == 200
        refused = client.post(f"/v2/models/{WARMUP_FAILS}/infer", json={"inputs": []})
        assert refused.status_code == 503 and "failed to load" in refused.json()["error"]
        texts = [f"text number {i}" for i in range(12)]  # several batches over both sessions
        assert client.post("/v1/classify", json={"inputs": texts}).status_code == 200
    gauge = {name: mixed_server.metric("squeezeserve_model_ready", model=name) for name in models}
    assert gauge == {WARMUP_FAILS: 0.0, CORRUPT: 0.0, CLS: 1.0}


def test_grpc_reports_the_same_states(mixed_server: RunningServer) -> None:
    with mixed_server.stubs() as (v1, v2):
        infos = {m.name: m for m in v1.ListModels(pb.ListModelsRequest(), timeout=10).models}
        assert {n: m.state for n, m in infos.items()} == {WARMUP_FAILS: "failed", CORRUPT: "failed", CLS: "ready"}
        assert infos[CORRUPT].reason
        assert not v2.ModelReady(ipb.ModelReadyRequest(name=WARMUP_FAILS), timeout=10).ready
        assert v2.ModelReady(ipb.ModelReadyRequest(name=CLS), timeout=10).ready
        assert v2.ServerReady(ipb.ServerReadyRequest(), timeout=10).ready


def test_ready_requires_all_models_when_asked(mixed_store: Path) -> None:
    settings = settings_for(mixed_store, ready_requires_all_models=True, warmup=False)
    with running_server(settings) as server, server.client() as client:
        # Without warm-up only the corrupt entry fails; that is enough to stay not ready.
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json() == {"status": "failed"}
        assert client.post("/v1/classify", json={"inputs": "still served"}).status_code == 200
