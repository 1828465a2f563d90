"""API keys and mTLS on both transports, against `squeezeserve serve` as a real process.

One server with two API keys and mTLS serves the module; certificates are made here (trustme).
Every route family of REST and every method family of both gRPC services is called with no key,
a wrong key and a right key; the server's own counters say what it refused.
"""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from loadtest.server import ServerProcess, free_port, serve_command, server_env
from service.grpc.generated.inference import grpc_service_pb2 as ipb
from service.grpc.generated.inference import grpc_service_pb2_grpc as ipb_grpc
from service.grpc.generated.squeezeserve.v1 import squeezeserve_pb2 as pb
from service.grpc.generated.squeezeserve.v1 import squeezeserve_pb2_grpc as pb_grpc
from tests.harness import running_server, server_process, settings_for
from tests.pki_support import Pki, make_pki
from tests.test_tritonclient import client_python  # noqa: F401 - the fixture (its venv)

KEY_A, KEY_B, WRONG = "sqz-test-key-alpha-0001", "sqz-test-key-beta-00002", "sqz-test-key-wrong-9999"
CLS, NER, QA = "sequence-classification", "token-classification", "question-answering"
V2_INFER_BODY = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a fine film"]}]}
REST_ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/v1/models", None),
    ("POST", "/v1/classify", {"inputs": "a fine film"}),
    ("POST", "/v1/token-classify", {"inputs": "Ada lives in Paris"}),
    ("POST", "/v1/answer", {"inputs": {"question": "Who?", "context": "Ada lives in Paris."}}),
    ("GET", "/v2", None),
    ("GET", "/v2/models", None),
    ("GET", f"/v2/models/{CLS}", None),
    ("GET", f"/v2/models/{CLS}/versions/1", None),
    ("GET", f"/v2/models/{CLS}/ready", None),
    ("POST", f"/v2/models/{CLS}/infer", V2_INFER_BODY),
    ("POST", f"/v2/models/{CLS}/versions/1/infer", V2_INFER_BODY),
]
OPEN_ROUTES = ["/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready", "/openapi.json"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "api-keys"
    path.write_text(f"# rotated monthly\n{KEY_A}\n\n{KEY_B}\n")
    return path


def _https_ready(pki: Pki) -> Any:
    def ready(server: ServerProcess) -> bool:
        url = f"https://127.0.0.1:{server.http_port}/readyz"
        return httpx.get(url, verify=pki.client_context(), timeout=2).status_code == 200

    return ready


@pytest.fixture(scope="module")
def server(store: Path, pki: Pki, keys_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    settings = {
        "SQZ_API_KEYS_FILE": str(keys_file),
        "SQZ_TLS_CERT_FILE": str(pki.server_cert),
        "SQZ_TLS_KEY_FILE": str(pki.server_key),
        "SQZ_TLS_CLIENT_CA_FILE": str(pki.client_ca),
        "SQZ_LOG_LEVEL": "debug",
        "SQZ_LOG_FORMAT": "json",
    }
    log = tmp_path_factory.mktemp("log") / "server.log"
    with server_process(store, log, _https_ready(pki), **settings) as running:
        yield running


def _client(server: ServerProcess, pki: Pki, key: str | None = None, **context: bool) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    url = f"https://127.0.0.1:{server.http_port}"
    return httpx.Client(base_url=url, verify=pki.client_context(**context), headers=headers, timeout=30)


def _counter(server: ServerProcess, pki: Pki, transport: str, reason: str) -> float:
    with _client(server, pki) as client:
        text = client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "squeezeserve_unauthenticated_requests_total" and sample.labels == {
                "transport": transport,
                "reason": reason,
            }:
                return float(sample.value)
    return 0.0


def test_every_rest_route_family_needs_a_key(server: ServerProcess, pki: Pki) -> None:
    before = {r: _counter(server, pki, "http", r) for r in ("missing", "invalid")}
    for key, challenge in ((None, 'Bearer realm="squeezeserve"'), (WRONG, 'error="invalid_token"')):
        with _client(server, pki, key) as client:
            for method, path, body in [*REST_ROUTES, ("GET", "/no/such/route", None)]:
                response = client.request(method, path, json=body)
                assert response.status_code == 401, (method, path, key, response.text)
                assert challenge in response.headers["www-authenticate"]
                assert "error" in response.json()
    refused = len(REST_ROUTES) + 1
    assert _counter(server, pki, "http", "missing") == before["missing"] + refused
    assert _counter(server, pki, "http", "invalid") == before["invalid"] + refused
    for key in (KEY_A, KEY_B):
        with _client(server, pki, key) as client:
            for method, path, body in REST_ROUTES:
                response = client.request(method, path, json=body)
                assert response.status_code == 200, (method, path, response.text)
    with _client(server, pki) as client:
        for path in OPEN_ROUTES:
            assert client.get(path).status_code == 200, path


def test_the_docs_pages_and_everything_they_load_stay_open_with_keys_on(server: ServerProcess, pki: Pki) -> None:
    """docs is exempt by default: the pages' own scripts, styles and icon too, or they render blank."""
    with _client(server, pki) as client:
        for page in ("/docs", "/redoc"):
            html = client.get(page)
            assert html.status_code == 200
            loaded = re.findall(r'(?:src|href)="(/[^"]+)"', html.text)
            assert len(loaded) >= 2, html.text
            for path in loaded:
                assert client.get(path).status_code == 200, path


def _grpc_calls(channel: grpc.Channel) -> list[tuple[str, Any]]:
    v1, v2 = pb_grpc.InferenceStub(channel), ipb_grpc.GRPCInferenceServiceStub(channel)
    tensor = ipb.ModelInferRequest.InferInputTensor(name="text", datatype="BYTES", shape=[1])
    tensor.contents.bytes_contents.append(b"a fine film")
    return [
        ("v1.Classify", lambda md: v1.Classify(pb.ClassifyRequest(inputs=[pb.TextInput(text="fine")]), metadata=md)),
        ("v1.TokenClassify", lambda md: v1.TokenClassify(pb.TokenClassifyRequest(inputs=["Ada"]), metadata=md)),
        (
            "v1.Answer",
            lambda md: v1.Answer(
                pb.AnswerRequest(inputs=[pb.QAInput(question="Who?", context="Ada lives.")]), metadata=md
            ),
        ),
        ("v1.ListModels", lambda md: v1.ListModels(pb.ListModelsRequest(), metadata=md)),
        ("v2.ServerMetadata", lambda md: v2.ServerMetadata(ipb.ServerMetadataRequest(), metadata=md)),
        ("v2.ModelMetadata", lambda md: v2.ModelMetadata(ipb.ModelMetadataRequest(name=CLS), metadata=md)),
        ("v2.ModelReady", lambda md: v2.ModelReady(ipb.ModelReadyRequest(name=CLS), metadata=md)),
        (
            "v2.ModelInfer",
            lambda md: v2.ModelInfer(ipb.ModelInferRequest(model_name=CLS, inputs=[tensor]), metadata=md),
        ),
    ]


def _channel(server: ServerProcess, pki: Pki, **credentials: bool) -> grpc.Channel:
    return grpc.secure_channel(f"127.0.0.1:{server.grpc_port}", pki.grpc_credentials(**credentials))


def test_every_grpc_method_family_needs_a_key(server: ServerProcess, pki: Pki) -> None:
    before = {r: _counter(server, pki, "grpc", r) for r in ("missing", "invalid")}
    with _channel(server, pki) as channel:
        calls = _grpc_calls(channel)
        for metadata in ((), (("authorization", f"Bearer {WRONG}"),), (("authorization", KEY_A),)):
            for name, call in calls:
                with pytest.raises(grpc.RpcError) as refused:
                    call(metadata)
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, (name, metadata)
        for key in (KEY_A, KEY_B):
            for name, call in calls:
                assert call((("authorization", f"Bearer {key}"),)) is not None, name
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        v2 = ipb_grpc.GRPCInferenceServiceStub(channel)
        assert v2.ServerLive(ipb.ServerLiveRequest()).live and v2.ServerReady(ipb.ServerReadyRequest()).ready
    assert _counter(server, pki, "grpc", "missing") == before["missing"] + len(calls)
    # "Bearer <wrong>" and a key without the Bearer scheme are both invalid
    assert _counter(server, pki, "grpc", "invalid") == before["invalid"] + 2 * len(calls)


def test_mtls_refuses_clients_without_a_trusted_certificate(server: ServerProcess, pki: Pki) -> None:
    for context in ({"cert": False}, {"rogue": True}):
        with _client(server, pki, KEY_A, **context) as client, pytest.raises((httpx.TransportError, ssl.SSLError)):
            client.get("/v1/models")
        with _channel(server, pki, **context) as channel, pytest.raises(grpc.RpcError) as refused:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(httpx.TransportError):  # and plaintext is not served at all
        httpx.get(f"http://127.0.0.1:{server.http_port}/healthz", timeout=5)
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as plain, pytest.raises(grpc.RpcError):
        health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(), timeout=5)


def _accepted(server: ServerProcess, pki: Pki, key: str) -> bool:
    with _client(server, pki, key) as client:
        return client.get("/v1/models").status_code == 200


def _wait_for(condition: Any, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return bool(condition())


def test_keys_are_reloaded_when_the_file_changes_and_on_sighup(
    server: ServerProcess, pki: Pki, keys_file: Path
) -> None:
    original = keys_file.read_text()
    try:
        # A rotation (the file changes): the new key works and the dropped one stops working.
        keys_file.write_text(f"{KEY_A}\nsqz-test-key-gamma-0003\n")
        assert _wait_for(lambda: _accepted(server, pki, "sqz-test-key-gamma-0003"))
        assert not _accepted(server, pki, KEY_B)
        # SIGHUP: the same size, inode and mtime, so only the signal can make the server look.
        stat = keys_file.stat()
        with keys_file.open("r+") as f:
            f.write(f"{KEY_A}\nsqz-test-key-delta-0004\n")
        os.utime(keys_file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        time.sleep(1.5)  # past the change-check interval: the unchanged stamp must not trigger a reload
        assert not _accepted(server, pki, "sqz-test-key-delta-0004")
        server.process.send_signal(signal.SIGHUP)
        assert _wait_for(lambda: _accepted(server, pki, "sqz-test-key-delta-0004"))
        # A broken rotation (no keys left) keeps the keys that work (requests notice the change).
        keys_file.write_text("# nothing\n")
        assert _wait_for(lambda: _accepted(server, pki, KEY_A) and "holds no keys" in server.log())
    finally:
        keys_file.write_text(original)
        assert _wait_for(lambda: _accepted(server, pki, KEY_B))


def test_keys_never_reach_the_log(server: ServerProcess, pki: Pki) -> None:
    with _client(server, pki, WRONG) as client:
        refused = client.post("/v1/classify", json={"inputs": "x"}, headers={"X-Request-Id": "wrong-key-call"})
        assert refused.status_code == 401
    assert _wait_for(lambda: "wrong-key-call" in server.log())  # its access line is written
    log = server.log()
    assert "API keys 2 key(s)" in log and "mTLS" in log  # the log is the server's (debug level)
    for secret in (KEY_A, KEY_B, WRONG, "delta-0004", "gamma-0003"):
        assert secret not in log


def _log_lines(server: ServerProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in server.log().splitlines() if line.strip()]


def test_json_logs_one_object_per_line_with_access_lines_for_both_transports(server: ServerProcess, pki: Pki) -> None:
    with _client(server, pki, KEY_A) as client:
        served = client.post("/v1/classify", json={"inputs": "fine"}, headers={"X-Request-Id": "log-rest-1"})
        assert served.status_code == 200
    with _client(server, pki) as client:
        assert client.post("/v1/answer", json={}, headers={"X-Request-Id": "log-rest-2"}).status_code == 401
    with _channel(server, pki) as channel:
        metadata = (("authorization", f"Bearer {KEY_B}"), ("x-request-id", "log-grpc-1"))
        request = pb.ClassifyRequest(inputs=[pb.TextInput(text="fine")])
        pb_grpc.InferenceStub(channel).Classify(request, metadata=metadata)

    def access() -> dict[str, dict[str, Any]]:
        lines = _log_lines(server)  # every line parses, or this raises
        return {x["request_id"]: x for x in lines if x["logger"] == "squeezeserve.access" and "request_id" in x}

    assert _wait_for(lambda: {"log-rest-1", "log-rest-2", "log-grpc-1"} <= set(access()))
    lines, by_id = _log_lines(server), access()
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    assert any(x["logger"] == "service.server" and x["message"].startswith("listening") for x in lines)
    assert any(x["logger"].startswith("uvicorn") for x in lines)  # uvicorn's own lines are JSON too
    for request_id, transport, status in (("log-rest-1", "http", 200), ("log-grpc-1", "grpc", "OK")):
        line = by_id[request_id]
        assert line["transport"] == transport and line["status"] == status and line["level"] == "info"
        assert line["model"] == CLS and line["task"] == "sequence-classification"
        assert line["duration_ms"] >= line["inference_ms"] > 0 and line["tokenize_ms"] > 0
    refused = by_id["log-rest-2"]
    assert refused["status"] == 401 and refused["path"] == "/v1/answer" and "model" not in refused


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"SQZ_TLS_CERT_FILE": "{missing}", "SQZ_TLS_KEY_FILE": "{server_key}"}, "cannot read SQZ_TLS_CERT_FILE"),
        ({"SQZ_TLS_CERT_FILE": "{server_cert}", "SQZ_TLS_KEY_FILE": "{dir}"}, "cannot read SQZ_TLS_KEY_FILE"),
        (
            {"SQZ_TLS_CERT_FILE": "{server_cert}", "SQZ_TLS_KEY_FILE": "{other_key}"},
            "is not the private key of SQZ_TLS_CERT_FILE",
        ),
        (
            {"SQZ_TLS_CERT_FILE": "{server_key}", "SQZ_TLS_KEY_FILE": "{server_cert}"},
            "holds no PEM certificate",
        ),
        (
            {"SQZ_TLS_CERT_FILE": "{server_cert}", "SQZ_TLS_KEY_FILE": "{server_key}"}
            | {"SQZ_TLS_CLIENT_CA_FILE": "{dir}"},
            "cannot read SQZ_TLS_CLIENT_CA_FILE",
        ),
        ({"SQZ_API_KEYS_FILE": "{missing}"}, "cannot read SQZ_API_KEYS_FILE"),
        ({"SQZ_API_KEYS_FILE": "{empty}"}, "holds no keys"),
    ],
    ids=["missing-cert", "unreadable-key", "mismatched-key", "swapped", "unreadable-ca", "missing-keys", "empty-keys"],
)
def test_bad_security_files_refuse_to_start_with_one_line(
    store: Path, pki: Pki, tmp_path: Path, settings: dict[str, str], expected: str
) -> None:
    (tmp_path / "empty").write_text("\n")
    names = {"missing": tmp_path / "absent.pem", "dir": tmp_path, "empty": tmp_path / "empty"}
    names.update({field: getattr(pki, field) for field in ("server_cert", "server_key", "other_key")})
    env = server_env({k: v.format(**{n: str(p) for n, p in names.items()}) for k, v in settings.items()}, isolated=True)
    done = subprocess.run(serve_command(store, free_port(), free_port()), env=env, capture_output=True, timeout=60)
    errors = [line for line in done.stderr.decode().splitlines() if "ERROR" in line]
    assert done.returncode == 2 and len(errors) == 1, done.stderr.decode()
    assert expected in errors[0] and "cannot start" in errors[0]


TRITON_CLIENT = r"""
import json, sys
import numpy as np

kind, url, model, key, ca, cert, keyfile = sys.argv[1:8]
# gRPC metadata keys are lowercase (grpc refuses "Authorization"); HTTP headers are case-blind.
auth = {("authorization" if kind == "grpc" else "Authorization"): f"Bearer {key}"}
if kind == "grpc":
    import tritonclient.grpc as client
    c = client.InferenceServerClient(
        url, ssl=True, root_certificates=ca, private_key=keyfile, certificate_chain=cert
    )
else:
    import gevent.ssl
    import tritonclient.http as client
    c = client.InferenceServerClient(
        url, ssl=True, ssl_options={"ca_certs": ca, "certfile": cert, "keyfile": keyfile},
        ssl_context_factory=gevent.ssl.create_default_context,
    )
text = client.InferInput("text", [1], "BYTES")
text.set_data_from_numpy(np.array([b"a fine film"], dtype=object))
result = c.infer(model, [text], headers=auth)
try:
    c.infer(model, [text])
    refused = None
except client.InferenceServerException as exc:
    refused = str(exc.status())
print(json.dumps({
    "ready": c.is_server_ready(),  # exempt: no key
    "metadata": c.get_model_metadata(model, headers=auth, **({"as_json": True} if kind == "grpc" else {}))["name"],
    "label": result.as_numpy("label").ravel()[0].decode(),
    "refused_without_key": refused,
}))
"""


@pytest.mark.parametrize("kind", ["http", "grpc"])
def test_tritonclient_over_tls_with_a_client_certificate_and_a_key(
    server: ServerProcess,
    pki: Pki,
    client_python: Path,  # noqa: F811 - the fixture imported from test_tritonclient
    kind: str,
) -> None:
    port = server.http_port if kind == "http" else server.grpc_port
    files = [str(p) for p in (pki.server_ca, pki.client_cert, pki.client_key)]
    args = [str(client_python), "-c", TRITON_CLIENT, kind, f"localhost:{port}", CLS, KEY_A, *files]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    with _client(server, pki, KEY_A) as client:
        want = client.post("/v1/classify", json={"inputs": "a fine film"}).json()["results"][0][0]["label"]
    assert got["ready"] is True and got["metadata"] == CLS and got["label"] == want
    assert got["refused_without_key"] in ("401", "StatusCode.UNAUTHENTICATED")


def test_container_healthcheck_works_with_mtls(server: ServerProcess, pki: Pki) -> None:
    script = Path(__file__).resolve().parent.parent / "deploy" / "docker" / "healthcheck.py"
    env = {
        **server_env(isolated=True),
        "SQZ_HTTP_PORT": str(server.http_port),
        "SQZ_TLS_CERT_FILE": str(pki.server_cert),
        "SQZ_TLS_CLIENT_CA_FILE": str(pki.client_ca),
        "SQZ_HEALTHCHECK_CA_FILE": str(pki.server_ca),
    }
    with_cert = {"SQZ_HEALTHCHECK_CERT_FILE": str(pki.client_cert), "SQZ_HEALTHCHECK_KEY_FILE": str(pki.client_key)}
    for extra, healthy in ((with_cert, True), ({}, False)):
        done = subprocess.run([sys.executable, str(script)], env={**env, **extra}, capture_output=True, timeout=30)
        assert (done.returncode == 0) is healthy, done.stderr


def test_auth_exempt_is_configurable_on_both_transports(store: Path, keys_file: Path) -> None:
    """SQZ_AUTH_EXEMPT=metrics: health and docs need the key too, on REST and on gRPC."""
    settings = {"api_keys_file": keys_file, "auth_exempt": frozenset({"metrics"})}
    with running_server(settings_for(store, **settings), load=False) as running, running.client() as client:
        for path in ("/healthz", "/readyz", "/v2/health/live", "/openapi.json"):
            assert client.get(path).status_code == 401, path
        assert client.get("/metrics").status_code == 200
        assert client.get("/healthz", headers={"Authorization": f"Bearer {KEY_A}"}).status_code == 200
        # The container health check sends the first key of the file when health is not exempt.
        script = Path(__file__).resolve().parent.parent / "deploy" / "docker" / "healthcheck.py"
        env = {
            **server_env(isolated=True),
            "SQZ_HTTP_PORT": str(running.http_port),
            "SQZ_API_KEYS_FILE": str(keys_file),
        }
        for exempt, healthy in (("metrics", True), ("health,metrics", False)):
            command = [sys.executable, str(script), "/healthz"]
            done = subprocess.run(command, env={**env, "SQZ_AUTH_EXEMPT": exempt}, capture_output=True, timeout=30)
            assert (done.returncode == 0) is healthy, (exempt, done.stderr)
        with running.channel() as channel:
            with pytest.raises(grpc.RpcError) as refused:
                health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            metadata = (("authorization", f"Bearer {KEY_A}"),)
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5, metadata=metadata)
