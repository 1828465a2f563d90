"""A real KServe v2 client (tritonclient, gRPC and HTTP) against the shared test server.

HTTP runs with tritonclient's default options (binary tensor data extension for inputs and
outputs), with named outputs (binary per output) and with JSON tensors asked for explicitly.

tritonclient pins a protobuf older than our generated code needs, so it lives in its own venv
(cached under pytest's cache dir) and runs as a subprocess; the test compares what it printed
with the service called directly.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from service.tasks.base import ClassifyParams, TextInput
from tests.harness import RunningServer

REQUIREMENT = "tritonclient[grpc,http]"
INSTALL_TIMEOUT_S = 600
CLIENT_TIMEOUT_S = 120
NETWORK_ERRORS = (
    "NewConnectionError",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "ConnectTimeoutError",
    "No matching distribution found",
    "Could not find a version",
)
MODEL = "sequence-classification"
TEXTS = ["a truly wonderful film", "the plot made no sense at all"]

CLIENT = r"""
import json, sys
import numpy as np

kind, url, model, texts = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
if kind == "grpc":
    import tritonclient.grpc as client
else:
    import tritonclient.http as client
c = client.InferenceServerClient(url)
server_meta = c.get_server_metadata(as_json=True) if kind == "grpc" else c.get_server_metadata()
model_meta = c.get_model_metadata(model, as_json=True) if kind == "grpc" else c.get_model_metadata(model)
text = client.InferInput("text", [len(texts)], "BYTES")
data = np.array([t.encode() for t in texts], dtype=object)
if kind == "http-json":  # JSON tensors both ways, asked for explicitly
    text.set_data_from_numpy(data, binary_data=False)
    outputs = [client.InferRequestedOutput(name, binary_data=False) for name in ("label", "score")]
    result = c.infer(model, [text], outputs=outputs)
elif kind == "http-outputs":  # default options with named outputs: each asks for binary data
    text.set_data_from_numpy(data)
    result = c.infer(model, [text], outputs=[client.InferRequestedOutput(name) for name in ("label", "score")])
else:  # default options: gRPC raw contents; HTTP binary inputs, and binary_data_output for every output
    text.set_data_from_numpy(data)
    result = c.infer(model, [text])
response = result.get_response() if kind != "grpc" else {"outputs": []}
print(json.dumps({
    "live": c.is_server_live(),
    "ready": c.is_server_ready(),
    "model_ready": c.is_model_ready(model),
    "server_name": server_meta["name"],
    "inputs": [i["name"] for i in model_meta["inputs"]],
    "labels": [x.decode() if isinstance(x, bytes) else x for x in result.as_numpy("label").ravel()],
    "scores": result.as_numpy("score").ravel().tolist(),
    "score_shape": list(result.as_numpy("score").shape),
    "binary_outputs": [o["name"] for o in response["outputs"] if "binary_data_size" in o.get("parameters", {})],
}))
"""


def _pip_install(venv: Path) -> None:
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    done = subprocess.run([*pip, REQUIREMENT], capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    if done.returncode != 0:
        output = done.stdout + done.stderr
        if any(marker in output for marker in NETWORK_ERRORS):
            pytest.skip(f"package index unreachable, cannot install {REQUIREMENT}: {output.strip()[-300:]}")
        raise AssertionError(f"pip install {REQUIREMENT} failed:\n{output[-3000:]}")


@pytest.fixture(scope="module")
def client_python(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Python with tritonclient, in a venv kept in the pytest cache between runs."""
    cache = getattr(request.config, "cache", None)
    venv = cache.mkdir("tritonclient-venv") if cache is not None else tmp_path_factory.mktemp("tritonclient-venv")
    stamp = venv / ".installed"
    if not stamp.exists() or stamp.read_text() != REQUIREMENT:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=120)
        _pip_install(venv)
        stamp.write_text(REQUIREMENT)
    return venv / "bin" / "python"


def _run_client(python: Path, kind: str, url: str) -> dict[str, Any]:
    args = [str(python), "-c", CLIENT, kind, url, MODEL, json.dumps(TEXTS)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _check_against_the_service(server: RunningServer, got: dict[str, Any]) -> None:
    assert got["live"] and got["ready"] and got["model_ready"]
    assert got["server_name"] == "squeezeserve" and got["inputs"] == ["text", "text_pair"]
    direct = server.run(server.core.service.classify(MODEL, [TextInput(t) for t in TEXTS], ClassifyParams()))
    assert got["score_shape"] == [len(TEXTS), 1]
    assert got["labels"] == [r[0].label for r in direct.results]
    assert got["scores"] == pytest.approx([r[0].score for r in direct.results], abs=1e-6)


def test_tritonclient_grpc(server: RunningServer, client_python: Path) -> None:
    _check_against_the_service(server, _run_client(client_python, "grpc", server.address))


@pytest.fixture
def http_url(server: RunningServer) -> str:
    return server.url.removeprefix("http://")


@pytest.mark.parametrize(
    ("kind", "binary_outputs"),
    [("http", ["label", "score"]), ("http-outputs", ["label", "score"]), ("http-json", [])],
    ids=["default-options", "default-named-outputs", "json"],
)
def test_tritonclient_http(
    server: RunningServer, client_python: Path, http_url: str, kind: str, binary_outputs: list[str]
) -> None:
    got = _run_client(client_python, kind, http_url)
    _check_against_the_service(server, got)
    assert got["binary_outputs"] == binary_outputs
