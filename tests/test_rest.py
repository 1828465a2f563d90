"""REST happy paths over a real uvicorn server: every route and input shape, v1 == service == v2."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from typing import Any

import httpx
import pytest

from service.api.converters_v1 import entity_out
from service.tasks.base import AnswerParams, ClassifyParams, QAInput, TextInput, TokenClassifyParams
from tests.harness import RunningServer, wait_until

CLS, NER, QA = "sequence-classification", "token-classification", "question-answering"
CONTEXT = "The treaty was signed in Vienna in 1815 by eleven countries."


def _labels(results: list[list[Any]]) -> list[list[dict[str, Any]]]:
    return [[{"label": x.label, "score": pytest.approx(x.score, abs=1e-5)} for x in r] for r in results]


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        ("a fine day", [TextInput("a fine day")]),
        (["a fine day", "rain again"], [TextInput("a fine day"), TextInput("rain again")]),
        ({"text": "a man sleeps", "text_pair": "someone rests"}, [TextInput("a man sleeps", "someone rests")]),
        (["mixed", {"text": "a", "text_pair": "b"}], [TextInput("mixed"), TextInput("a", "b")]),
    ],
)
def test_classify_every_input_shape_matches_the_service(
    server: RunningServer, client: httpx.Client, inputs: Any, expected: list[TextInput]
) -> None:
    response = client.post("/v1/classify", json={"inputs": inputs, "parameters": {"top_k": None}})
    assert response.status_code == 200, response.text
    direct = server.run(server.core.service.classify(None, expected, ClassifyParams(top_k=None)))
    assert response.json() == {"model": CLS, "results": _labels(direct.results)}


def test_classify_default_top_k_is_one_and_model_can_be_named(client: httpx.Client) -> None:
    body = client.post("/v1/classify", json={"inputs": "ok", "model": CLS}).json()
    assert body["model"] == CLS and len(body["results"]) == 1 and len(body["results"][0]) == 1


@pytest.mark.parametrize("strategy", ["none", "simple"])
def test_token_classify_matches_the_service(server: RunningServer, client: httpx.Client, strategy: str) -> None:
    texts = ["Ada Lovelace lived in London", "Paris"]
    response = client.post(
        "/v1/token-classify", json={"inputs": texts, "parameters": {"aggregation_strategy": strategy}}
    )
    assert response.status_code == 200, response.text
    params = TokenClassifyParams(aggregation_strategy=strategy)
    direct = server.run(server.core.service.tag_tokens(None, [TextInput(t) for t in texts], params))
    expected = [[entity_out(e).model_dump() for e in r] for r in direct.results]
    assert response.json() == {"model": NER, "results": expected}
    keys = {"entity", "score", "index", "word", "start", "end"} if strategy == "none" else None
    keys = keys or {"entity_group", "score", "word", "start", "end"}
    assert all(set(e) == keys for r in response.json()["results"] for e in r)


def test_token_classify_single_string(client: httpx.Client) -> None:
    body = client.post("/v1/token-classify", json={"inputs": "Ada", "parameters": {"ignore_labels": []}}).json()
    assert len(body["results"]) == 1 and body["results"][0]


def test_answer_single_and_list_match_the_service(server: RunningServer, client: httpx.Client) -> None:
    item = {"question": "Where was it signed?", "context": CONTEXT}
    single = client.post("/v1/answer", json={"inputs": item, "parameters": {"top_k": 2}})
    batch = client.post("/v1/answer", json={"inputs": [item, item], "parameters": {"top_k": 2}})
    assert single.status_code == batch.status_code == 200
    qa = QAInput(item["question"], item["context"])
    direct = server.run(server.core.service.answer(None, [qa], AnswerParams(top_k=2)))
    expected = [
        {"answer": a.answer, "score": pytest.approx(a.score, abs=1e-5), "start": a.start, "end": a.end}
        for a in direct.results[0]
    ]
    assert single.json() == {"model": QA, "results": [expected]}
    assert batch.json() == {"model": QA, "results": [expected, expected]}
    for a in single.json()["results"][0]:
        assert CONTEXT[a["start"] : a["end"]] == a["answer"]


def test_v1_and_v2_agree(client: httpx.Client) -> None:
    texts = ["a fine day", "rain again"]
    v1 = client.post("/v1/classify", json={"inputs": texts, "parameters": {"top_k": None}}).json()
    request = {"inputs": [{"name": "text", "shape": [2, 1], "datatype": "BYTES", "data": [[t] for t in texts]}]}
    v2 = client.post(f"/v2/models/{CLS}/infer", json={**request, "parameters": {"top_k": 0}, "id": "r1"}).json()
    labels, scores = v2["outputs"]
    assert v2["model_name"] == CLS and v2["model_version"] == "1" and v2["id"] == "r1"
    assert labels["shape"] == scores["shape"] == [2, 2] and scores["datatype"] == "FP32"
    assert labels["data"] == [x["label"] for r in v1["results"] for x in r]
    assert scores["data"] == pytest.approx([x["score"] for r in v1["results"] for x in r], abs=1e-5)


def test_v2_ner_and_qa_agree_with_v1(client: httpx.Client) -> None:
    text = "Ada Lovelace lived in London"
    v1 = client.post("/v1/token-classify", json={"inputs": text}).json()
    ner = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [text]}]}
    (entities,) = client.post(f"/v2/models/{NER}/versions/1/infer", json=ner).json()["outputs"]
    assert json.loads(entities["data"][0]) == v1["results"][0]
    v1_qa = client.post("/v1/answer", json={"inputs": {"question": "Where?", "context": CONTEXT}}).json()
    qa = {
        "inputs": [
            {"name": "question", "shape": [1], "datatype": "BYTES", "data": ["Where?"]},
            {"name": "context", "shape": [1], "datatype": "BYTES", "data": [CONTEXT]},
        ],
        "outputs": [{"name": "answer"}, {"name": "start"}],
    }
    answer, start = client.post(f"/v2/models/{QA}/infer", json=qa).json()["outputs"]
    assert answer["data"] == [v1_qa["results"][0][0]["answer"]] and start["data"] == [v1_qa["results"][0][0]["start"]]


def test_v2_infer_without_content_type(client: httpx.Client) -> None:
    body = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["hello"]}]}
    response = client.post(f"/v2/models/{CLS}/infer", content=json.dumps(body).encode())
    assert "content-type" not in response.request.headers
    assert response.status_code == 200, response.text
    labelled = client.post("/v1/classify", content=b'{"inputs": "hello"}', headers={"Content-Type": "text/plain"})
    assert labelled.status_code == 415, labelled.text  # tests/test_browser.py has the rest of that rule


def test_v2_metadata_routes(client: httpx.Client) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    server = client.get("/v2").json()
    assert server["name"] == "squeezeserve" and isinstance(server["extensions"], list) and server["version"]
    assert sorted(client.get("/v2/models").json()["models"]) == sorted([CLS, NER, QA])
    meta = client.get(f"/v2/models/{QA}").json()
    assert meta["name"] == QA and meta["versions"] == ["1"] and meta["platform"]
    assert [t["name"] for t in meta["inputs"]] == ["question", "context"]
    assert client.get(f"/v2/models/{QA}/versions/1").json() == meta
    assert client.get(f"/v2/models/{CLS}/ready").json() == {"name": CLS, "ready": True}
    assert client.get(f"/v2/models/{CLS}/versions/1/ready").json() == {"name": CLS, "ready": True}


def test_models_health_and_readiness(client: httpx.Client) -> None:
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert set(models) == {CLS, NER, QA}
    assert models[CLS]["labels"] == ["NEGATIVE", "POSITIVE"] and models[CLS]["ready"] is True
    fields = {"name", "task", "labels", "max_seq_len", "trained", "ready", "precision", "state", "reason"}
    assert set(models[NER]) == fields | {"int8_vs_fp32"}
    assert models[NER]["state"] == "ready" and models[NER]["reason"] == ""
    figures = models[NER]["int8_vs_fp32"]  # the export's held-out int8 figures, as the manifest has them
    assert figures["unit"] == "token" and figures["entity_f1"] is not None and figures["decisive_agreement"] >= 0.995
    assert models[QA]["int8_vs_fp32"]["start_end_agreement"] is not None
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}


def test_request_ids_are_echoed_or_generated(client: httpx.Client) -> None:
    sane = client.post("/v1/classify", json={"inputs": "x"}, headers={"X-Request-Id": "abc.DEF-123_4"})
    assert sane.headers["x-request-id"] == "abc.DEF-123_4"
    for bad in ("has space", "x" * 129, "semi;colon"):
        generated = client.get("/healthz", headers={"X-Request-Id": bad}).headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert client.get("/nope", headers={"X-Request-Id": "err-1"}).headers["x-request-id"] == "err-1"


def test_timing_headers_on_inference_responses(client: httpx.Client) -> None:
    v1 = client.post("/v1/classify", json={"inputs": "x"})
    v2 = client.post(
        f"/v2/models/{CLS}/infer", json={"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}
    )
    for response in (v1, v2):
        values = {s: float(response.headers[f"x-timing-{s}-ms"]) for s in ("tokenize", "queue", "inference", "total")}
        assert all(v >= 0 for v in values.values()) and values["total"] >= values["tokenize"]
    assert "x-timing-total-ms" not in client.get("/healthz").headers


def test_metrics_count_exactly_the_requests_made(server: RunningServer, client: httpx.Client) -> None:
    ok = {"model": CLS, "task": CLS, "transport": "http", "outcome": "ok"}
    invalid = {**ok, "outcome": "invalid"}
    before_ok = server.metric("squeezeserve_requests_total", **ok)
    before_invalid = server.metric("squeezeserve_requests_total", **invalid)
    before_hist = server.metric("squeezeserve_request_duration_seconds_count", **ok)
    for _ in range(3):
        assert client.post("/v1/classify", json={"inputs": "x"}).status_code == 200
    v2 = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}
    assert client.post(f"/v2/models/{CLS}/infer", json=v2).status_code == 200
    assert client.post("/v1/classify", json={"inputs": " ", "model": CLS}).status_code == 422
    for path in ("/healthz", "/readyz", "/v2/health/ready", "/v1/models"):
        client.get(path)
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    assert server.metric("squeezeserve_requests_total", **ok) == before_ok + 4
    assert server.metric("squeezeserve_request_duration_seconds_count", **ok) == before_hist + 4
    assert server.metric("squeezeserve_requests_total", **invalid) == before_invalid + 1
    assert server.metric("squeezeserve_requests_in_flight", transport="http") == 0


def test_metrics_path_is_exact(client: httpx.Client) -> None:
    response = client.get("/metrics", follow_redirects=False)
    assert response.status_code == 200 and "# TYPE squeezeserve_requests_total counter" in response.text


def test_client_disconnect_drops_rows_before_inference(tight_server: RunningServer) -> None:
    """The row sits in the 1 s batch delay; the client leaves; the row must never reach ORT."""
    dropped = {"model": CLS, "reason": "cancelled"}
    cancelled = {"model": CLS, "task": CLS, "transport": "http", "outcome": "cancelled"}
    dropped_before = tight_server.metric("squeezeserve_rows_dropped_total", **dropped)
    batches_before = tight_server.metric("squeezeserve_batch_rows_count", model=CLS)
    cancelled_before = tight_server.metric("squeezeserve_requests_total", **cancelled)
    body = json.dumps({"inputs": "nobody waits for this"}).encode()
    head = f"POST /v1/classify HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
    with socket.create_connection(("127.0.0.1", tight_server.http_port), timeout=5) as sock:
        sock.sendall(head.encode() + b"\r\n\r\n" + body)
        wait_until(lambda: tight_server.metric("squeezeserve_queue_rows", model=CLS) == 1, 5, "the row queued")
    wait_until(
        lambda: tight_server.metric("squeezeserve_rows_dropped_total", **dropped) == dropped_before + 1,
        what="the row dropped",
    )
    assert tight_server.metric("squeezeserve_requests_total", **cancelled) == cancelled_before + 1
    assert tight_server.metric("squeezeserve_batch_rows_count", model=CLS) == batches_before
    assert tight_server.metric("squeezeserve_queue_rows", model=CLS) == 0


def test_metrics_exposition_passes_promtool(client: httpx.Client) -> None:
    """`promtool check metrics` (naming, units, help texts) on the live /metrics after real traffic."""
    from tests.test_deploy import tool

    promtool = tool("promtool", "apt-get install prometheus")
    for path, body in (
        ("/v1/classify", {"inputs": "fine"}),
        ("/v1/answer", {"inputs": {"question": "q", "context": "c"}}),
    ):
        assert client.post(path, json=body).status_code == 200
    assert client.post("/v1/classify", json={"inputs": ""}).status_code == 422
    exposition = client.get("/metrics").text
    result = subprocess.run(
        [promtool, "check", "metrics"], input=exposition, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), (
        result.stdout + result.stderr
    )


def test_every_stage_histogram_observes_real_traffic(client: httpx.Client) -> None:
    """Each per-stage histogram the dashboards plot must actually receive observations."""
    from prometheus_client.parser import text_string_to_metric_families

    def counts() -> dict[str, float]:
        families = text_string_to_metric_families(client.get("/metrics").text)
        totals: dict[str, float] = {}
        for family in families:
            for sample in family.samples:
                if sample.name.endswith("_count"):
                    totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
        return totals

    before = counts()
    assert client.post("/v1/classify", json={"inputs": ["one", "two"]}).status_code == 200
    after = counts()
    stages = (
        "squeezeserve_tokenize_duration_seconds_count",
        "squeezeserve_queue_wait_seconds_count",
        "squeezeserve_batch_inference_seconds_count",
        "squeezeserve_batch_rows_count",
        "squeezeserve_batch_padding_efficiency_ratio_count",
        "squeezeserve_request_duration_seconds_count",
    )
    for name in stages:
        assert after.get(name, 0.0) > before.get(name, 0.0), name
    assert (
        after["squeezeserve_tokenize_duration_seconds_count"]
        - before.get("squeezeserve_tokenize_duration_seconds_count", 0.0)
        == 1
    )
