"""One workload, four wire protocols: the same texts as REST /v1, KServe v2 REST, gRPC v1 and gRPC v2 requests.

A Workload holds REST /v1 bodies; `k6_target` converts every body to the protocol's request and
writes them (a JSON array) where the k6 script (loadtest/k6/) loads them with open().
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtest.server import REPO
from loadtest.workloads import Workload

PROTOCOLS = ("rest-v1", "rest-v2", "grpc-v1", "grpc-v2")
K6_DIR = Path(__file__).resolve().parent / "k6"
PROTO_ROOT = REPO / "proto"
V1_PROTO = "squeezeserve/v1/squeezeserve.proto"
V2_PROTO = "inference/grpc_service.proto"
V1_METHODS = {
    "/v1/classify": "squeezeserve.v1.Inference/Classify",
    "/v1/token-classify": "squeezeserve.v1.Inference/TokenClassify",
    "/v1/answer": "squeezeserve.v1.Inference/Answer",
}
V2_METHOD = "inference.GRPCInferenceService/ModelInfer"

Body = dict[str, Any]


@dataclass(frozen=True)
class K6Target:
    """A k6 script and the -e variables that point it at the server and at its request file."""

    protocol: str
    script: Path
    env: dict[str, str]


def parse_protocols(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(PROTOCOLS))
    if unknown or not names:
        raise SystemExit(f"protocols are {', '.join(PROTOCOLS)}; got {text!r}")
    return names


# ---- REST /v1 body -> per-task columns --------------------------------------------------------


def _texts(inputs: Any) -> list[str]:
    """classify / token-classify inputs: a text, or a list of texts (objects with a `text` too)."""
    items = inputs if isinstance(inputs, list) else [inputs]
    return [item["text"] if isinstance(item, dict) else item for item in items]


def _qa_pairs(inputs: Any) -> list[tuple[str, str]]:
    items = inputs if isinstance(inputs, list) else [inputs]
    return [(item["question"], item["context"]) for item in items]


def _columns(path: str, body: Body) -> dict[str, list[str]]:
    """The v2 input tensors of a /v1 body (service/v2/tasks.py: text | question + context)."""
    if path == "/v1/answer":
        pairs = _qa_pairs(body["inputs"])
        return {"question": [q for q, _ in pairs], "context": [c for _, c in pairs]}
    if path in ("/v1/classify", "/v1/token-classify"):
        return {"text": _texts(body["inputs"])}
    raise ValueError(f"no protocol mapping for {path}")


# ---- converters -------------------------------------------------------------------------------


def rest_v2_body(path: str, body: Body) -> Body:
    inputs = [
        {"name": name, "shape": [len(data)], "datatype": "BYTES", "data": data}
        for name, data in _columns(path, body).items()
    ]
    v2: Body = {"inputs": inputs}
    if body.get("parameters"):
        v2["parameters"] = body["parameters"]
    return v2


def _infer_parameter(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"bool_param": value}
    if isinstance(value, int):
        return {"int64_param": value}
    if isinstance(value, float):
        return {"double_param": value}
    return {"string_param": str(value)}


def grpc_v2_message(path: str, body: Body) -> Body:
    inputs = [
        {
            "name": name,
            "datatype": "BYTES",
            "shape": [len(data)],
            "contents": {"bytes_contents": [base64.b64encode(text.encode()).decode() for text in data]},
        }
        for name, data in _columns(path, body).items()
    ]
    parameters = {k: _infer_parameter(v) for k, v in body.get("parameters", {}).items()}
    return {"model_name": body["model"], "inputs": inputs, "parameters": parameters}


def grpc_v1_message(path: str, body: Body) -> Body:
    if path == "/v1/answer":
        inputs: list[Any] = [{"question": q, "context": c} for q, c in _qa_pairs(body["inputs"])]
    elif path == "/v1/classify":
        inputs = [{"text": text} for text in _texts(body["inputs"])]
    else:
        inputs = _texts(body["inputs"])
    message: Body = {"model": body.get("model", ""), "inputs": inputs}
    if body.get("parameters"):
        message["parameters"] = body["parameters"]
    return message


# ---- targets ----------------------------------------------------------------------------------


def _model(workload: Workload) -> str:
    models = {json.loads(body).get("model", "") for body in workload.bodies}
    if len(models) != 1 or not next(iter(models)):
        raise ValueError(f"{workload.name}: v2 needs one named model per workload, got {sorted(models)}")
    return models.pop()


def _write(items: list[Any], directory: Path, workload: Workload, protocol: str) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{workload.name}.{protocol}.json"
    path.write_text(json.dumps(items), encoding="utf-8")
    return str(path.resolve())


def _converted(workload: Workload, convert: Callable[[str, Body], Body]) -> list[Body]:
    return [convert(workload.path, json.loads(body)) for body in workload.bodies]


def k6_target(protocol: str, workload: Workload, http_url: str, grpc_target: str, directory: Path) -> K6Target:
    """Writes the workload's requests for `protocol` to `directory` and says how k6 sends them."""
    if protocol == "rest-v1":
        data = _write(list(workload.bodies), directory, workload, protocol)
        return K6Target(protocol, K6_DIR / "http.js", {"URL": http_url + workload.path, "DATA_PATH": data})
    if protocol == "rest-v2":
        bodies = [json.dumps(b) for b in _converted(workload, rest_v2_body)]
        url = f"{http_url}/v2/models/{_model(workload)}/infer"
        data = _write(bodies, directory, workload, protocol)
        return K6Target(protocol, K6_DIR / "http.js", {"URL": url, "DATA_PATH": data})
    if protocol == "grpc-v1":
        messages, proto, method = _converted(workload, grpc_v1_message), V1_PROTO, V1_METHODS[workload.path]
    elif protocol == "grpc-v2":
        _model(workload)
        messages, proto, method = _converted(workload, grpc_v2_message), V2_PROTO, V2_METHOD
    else:
        raise ValueError(f"unknown protocol {protocol!r}")
    env = {
        "TARGET": grpc_target,
        "PROTO_ROOT": str(PROTO_ROOT),
        "PROTO_FILE": proto,
        "METHOD": method,
        "DATA_PATH": _write(messages, directory, workload, protocol),
    }
    return K6Target(protocol, K6_DIR / "grpc.js", env)
