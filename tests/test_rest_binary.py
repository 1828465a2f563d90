"""The v2 REST route with Triton's binary tensor data extension: hand-built framed requests and responses.

A framed body is `Inference-Header-Content-Length` bytes of JSON request followed by the raw bytes
of the inputs that carry `binary_data_size`, in input order. Every case is compared with the same
request sent as plain JSON, and every malformed case with its exact status and message.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np
import pytest

from service.config import Settings
from service.grpc import tensors
from service.v2 import raw
from tests.harness import RunningServer

CLS, QA = "sequence-classification", "question-answering"
INFER = f"/v2/models/{CLS}/infer"
HEADER = "Inference-Header-Content-Length"
TEXTS = ["a truly wonderful film", "héllo wörld ✓ — naïve café"]
CONTEXT = "The treaty was signed in Vienna in 1815 by eleven countries."


# ---- helpers ----------------------------------------------------------------------------------


def json_input(name: str, values: list[Any], datatype: str = "BYTES") -> dict[str, Any]:
    return {"name": name, "shape": [len(values)], "datatype": datatype, "data": values}


def binary_input(name: str, buffer: bytes, count: int, datatype: str = "BYTES") -> dict[str, Any]:
    return {"name": name, "shape": [count], "datatype": datatype, "parameters": {"binary_data_size": len(buffer)}}


def text_input(name: str, texts: list[str]) -> tuple[dict[str, Any], bytes]:
    buffer = raw.bytes_elements_to_raw(texts)
    return binary_input(name, buffer, len(texts)), buffer


def post_framed(
    client: httpx.Client, request: dict[str, Any], *buffers: bytes, path: str = INFER, **headers: str
) -> httpx.Response:
    header = json.dumps(request).encode()
    return client.post(path, content=header + b"".join(buffers), headers={HEADER: str(len(header)), **headers})


def unframe(response: httpx.Response) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """The JSON header and every output's flat data (binary outputs decoded from the raw bytes)."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    length = int(response.headers[HEADER])
    header = json.loads(response.content[:length])
    data, offset = {}, length
    for output in header["outputs"]:
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is None:
            data[output["name"]] = output["data"]
            continue
        assert "data" not in output, output
        values = raw.data_from_raw(output["datatype"], response.content[offset : offset + size], output["name"])
        data[output["name"]] = [v.decode() if isinstance(v, bytes) else v for v in values]
        offset += size
    assert offset == len(response.content)
    return header, data


def json_outputs(client: httpx.Client, request: dict[str, Any], path: str = INFER) -> dict[str, list[Any]]:
    response = client.post(path, json=request)
    assert response.status_code == 200, response.text
    return {o["name"]: o["data"] for o in response.json()["outputs"]}


def assert_same(got: dict[str, list[Any]], want: dict[str, list[Any]]) -> None:
    assert got.keys() == want.keys()
    for name, values in want.items():
        if values and isinstance(values[0], float):
            assert got[name] == pytest.approx(values, abs=1e-6), name
        else:
            assert got[name] == values, name


def v2_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str), body
    return str(body["error"])


# ---- binary inputs ----------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [None, "application/octet-stream"])
def test_binary_text_inputs_give_the_json_answer(client: httpx.Client, content_type: str | None) -> None:
    tensor, buffer = text_input("text", TEXTS)
    extra = {"Content-Type": content_type} if content_type else {}
    request = {"id": "b1", "inputs": [tensor], "parameters": {"top_k": 0}}
    response = post_framed(client, request, buffer, **extra)
    assert response.status_code == 200, response.text
    # No binary output requested: the answer is plain JSON, as without the extension.
    assert response.headers["content-type"] == "application/json" and HEADER not in response.headers
    body = response.json()
    assert body["id"] == "b1" and body["model_name"] == CLS
    want = json_outputs(client, {"inputs": [json_input("text", TEXTS)], "parameters": {"top_k": 0}})
    assert_same({o["name"]: o["data"] for o in body["outputs"]}, want)
    assert [o["shape"] for o in body["outputs"]] == [[2, 2], [2, 2]]


def test_framed_json_only_body_is_accepted(client: httpx.Client) -> None:
    """A header with no binary input and nothing after the JSON is a plain request."""
    request = {"inputs": [json_input("text", TEXTS)]}
    response = post_framed(client, request)
    assert response.status_code == 200, response.text
    assert {o["name"]: o["data"] for o in response.json()["outputs"]} == json_outputs(client, request)


def test_mixed_binary_and_json_inputs(client: httpx.Client) -> None:
    pairs = ["it was fine", "terrible"]
    text, text_buffer = text_input("text", TEXTS)
    pair, pair_buffer = text_input("text_pair", pairs)
    want = json_outputs(client, {"inputs": [json_input("text", TEXTS), json_input("text_pair", pairs)]})
    for inputs, buffers in [
        ([text, json_input("text_pair", pairs)], [text_buffer]),
        ([json_input("text", TEXTS), pair], [pair_buffer]),
        ([pair, text], [pair_buffer, text_buffer]),  # buffers follow the inputs' order
    ]:
        response = post_framed(client, {"inputs": inputs}, *buffers)
        assert response.status_code == 200, response.text
        assert_same({o["name"]: o["data"] for o in response.json()["outputs"]}, want)


def test_two_binary_inputs_on_the_versioned_route(client: httpx.Client) -> None:
    questions = ["Where was the treaty signed?", "When?"]
    question, question_buffer = text_input("question", questions)
    context, context_buffer = text_input("context", [CONTEXT, CONTEXT])
    path = f"/v2/models/{QA}/versions/1/infer"
    request = {"inputs": [question, context], "parameters": {"top_k": 2, "binary_data_output": True}}
    header, got = unframe(post_framed(client, request, question_buffer, context_buffer, path=path))
    assert header["model_name"] == QA and [o["name"] for o in header["outputs"]] == ["answer", "score", "start", "end"]
    want = json_outputs(
        client,
        {
            "inputs": [json_input("question", questions), json_input("context", [CONTEXT] * 2)],
            "parameters": {"top_k": 2},
        },
        path=path,
    )
    assert_same(got, want)


# ---- binary outputs ---------------------------------------------------------------------------


def test_binary_output_requested_per_output(client: httpx.Client) -> None:
    outputs = [{"name": "label", "parameters": {"binary_data": True}}, {"name": "score"}]
    response = client.post(INFER, json={"inputs": [json_input("text", TEXTS)], "outputs": outputs})
    header, got = unframe(response)
    label, score = header["outputs"]
    assert label == {
        "name": "label",
        "datatype": "BYTES",
        "shape": [2, 1],
        "parameters": {"binary_data_size": len(raw.bytes_elements_to_raw(got["label"]))},
    }
    assert "parameters" not in score and score["shape"] == [2, 1]
    assert_same(got, json_outputs(client, {"inputs": [json_input("text", TEXTS)]}))
    assert response.headers["x-request-id"] and float(response.headers["x-timing-total-ms"]) > 0


def test_binary_outputs_requested_globally(client: httpx.Client) -> None:
    tensor, buffer = text_input("text", TEXTS)
    request = {"inputs": [tensor], "parameters": {"binary_data_output": True, "top_k": 0}}
    header, got = unframe(post_framed(client, request, buffer))
    assert all("data" not in o and o["parameters"]["binary_data_size"] > 0 for o in header["outputs"])
    score = next(o for o in header["outputs"] if o["name"] == "score")
    assert score["parameters"]["binary_data_size"] == 4 * 2 * 2  # FP32 [2, 2]
    assert_same(got, json_outputs(client, {"inputs": [json_input("text", TEXTS)], "parameters": {"top_k": 0}}))


def test_an_output_can_opt_out_of_the_global_binary_default(client: httpx.Client) -> None:
    outputs = [{"name": "score", "parameters": {"binary_data": False}}, {"name": "label"}]
    request = {"inputs": [json_input("text", TEXTS)], "outputs": outputs, "parameters": {"binary_data_output": True}}
    header, got = unframe(client.post(INFER, json=request))
    score, label = header["outputs"]
    assert "data" in score and "parameters" not in score and "data" not in label
    assert_same(got, json_outputs(client, {"inputs": [json_input("text", TEXTS)]}))


def test_binary_false_everywhere_is_plain_json(client: httpx.Client) -> None:
    outputs = [{"name": "label", "parameters": {"binary_data": False}}]
    request = {"inputs": [json_input("text", TEXTS)], "outputs": outputs, "parameters": {"binary_data_output": False}}
    response = client.post(INFER, json=request)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert [o["name"] for o in response.json()["outputs"]] == ["label"]


# ---- malformed requests -----------------------------------------------------------------------


def _framed_error(client: httpx.Client, body: bytes, length: str, status: int) -> str:
    return v2_error(client.post(INFER, content=body, headers={HEADER: length}), status)


def test_header_length_outside_the_body_is_422(client: httpx.Client) -> None:
    body = json.dumps({"inputs": [json_input("text", ["x"])]}).encode()
    message = _framed_error(client, body, str(len(body) + 1), 422)
    assert message == f"{HEADER} is {len(body) + 1} but the body has only {len(body)} bytes"


@pytest.mark.parametrize("length", ["-1", "abc", "1.5"])
def test_header_length_that_is_not_a_count_is_422(client: httpx.Client, length: str) -> None:
    message = _framed_error(client, b"{}", length, 422)
    assert message.startswith(f"header.{HEADER}: "), message


def test_malformed_json_header_is_400(client: httpx.Client) -> None:
    body = json.dumps({"inputs": [json_input("text", ["x"])]}).encode()
    where = f"the inference header (the body's first {HEADER} bytes) is not JSON: "
    assert _framed_error(client, body, str(len(body) - 2), 400).startswith(where)
    assert _framed_error(client, body, "0", 400).startswith(where)
    assert _framed_error(client, b"\xff\xfe" + body, "2", 400).startswith(where)


def test_invalid_json_header_is_422_like_a_json_body(client: httpx.Client) -> None:
    framed = post_framed(client, {"inputs": "x"})
    plain = client.post(INFER, json={"inputs": "x"})
    assert v2_error(framed, 422) == v2_error(plain, 422) == "body.inputs: Input should be a valid list"


@pytest.mark.parametrize(("declared", "sent"), [(5, 7), (9, 7), (0, 3)])
def test_sizes_must_add_up_to_the_binary_bytes(client: httpx.Client, declared: int, sent: int) -> None:
    inputs = [binary_input("text", b"x" * declared, 1)] if declared else [json_input("text", ["x"])]
    message = v2_error(post_framed(client, {"inputs": inputs}, b"\x00" * sent), 422)
    assert message == f"the inputs' binary_data_size add up to {declared} bytes but {sent} bytes follow the JSON header"


def _bad_binary_inputs() -> list[tuple[dict[str, Any], bytes, str]]:
    def case(buffer: bytes, expected: str, count: int = 1, **tensor: Any) -> tuple[dict[str, Any], bytes, str]:
        return binary_input("text", buffer, count) | tensor, buffer, expected

    hello = raw.bytes_elements_to_raw(["hello"])
    return [
        case(hello[:-2], "input 'text': raw BYTES element of 5 bytes overruns the buffer"),
        case(hello + b"\x01", "input 'text': raw BYTES buffer ends inside an element's length prefix"),
        case(hello, "input 'text': shape [2] needs 2 elements, got 1", count=2),
        case(hello, "input 'text': shape [1, 2] needs 2 elements, got 1", shape=[1, 2]),
        case(b"\x02\x00\x00\x00\xff\xfe", "input 'text' is not valid UTF-8"),
        case(hello, "input 'text': unknown datatype 'STRING'", datatype="STRING"),
        case(b"\x00" * 5, "input 'text': raw buffer of 5 bytes is not a whole number of FP32", datatype="FP32"),
        case(b"\x00" * 4, "input 'text' must be BYTES, got FP32", datatype="FP32"),
        case(hello, "input 'text' has both `data` and binary_data_size; send one", data=["hello"]),
    ]


def test_malformed_binary_inputs_are_422(client: httpx.Client) -> None:
    for tensor, buffer, expected in _bad_binary_inputs():
        assert v2_error(post_framed(client, {"inputs": [tensor]}, buffer), 422) == expected, tensor


@pytest.mark.parametrize("size", [-1, True, "5", 1.5])
def test_binary_data_size_must_be_a_count(client: httpx.Client, size: Any) -> None:
    tensor = {"name": "text", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": size}}
    message = v2_error(post_framed(client, {"inputs": [tensor]}, b"\x00" * 5), 422)
    assert message == f"input 'text': binary_data_size must be a non-negative integer, got {size!r}"


def test_binary_data_size_needs_the_header(client: httpx.Client) -> None:
    tensor, buffer = text_input("text", ["x"])
    response = client.post(INFER, content=json.dumps({"inputs": [tensor]}).encode() + buffer)
    assert v2_error(response, 400).startswith("body is not JSON: ")
    message = v2_error(client.post(INFER, json={"inputs": [tensor]}), 422)
    assert message == f"input 'text' has binary_data_size but the request has no {HEADER} header"


def test_an_input_without_data_is_422(client: httpx.Client) -> None:
    tensor = {"name": "text", "shape": [1], "datatype": "BYTES"}
    message = v2_error(client.post(INFER, json={"inputs": [tensor]}), 422)
    assert message == "input 'text' has no data: send `data` or the binary extension's binary_data_size"


def test_binary_flags_must_be_booleans(client: httpx.Client) -> None:
    inputs = [json_input("text", ["x"])]
    bad_global = {"inputs": inputs, "parameters": {"binary_data_output": "yes"}}
    assert v2_error(client.post(INFER, json=bad_global), 422) == (
        "request: parameter 'binary_data_output' must be a boolean, got 'yes'"
    )
    bad_output = {"inputs": inputs, "outputs": [{"name": "label", "parameters": {"binary_data": 1}}]}
    assert v2_error(client.post(INFER, json=bad_output), 422) == (
        "output 'label': parameter 'binary_data' must be a boolean, got 1"
    )


def test_framed_body_over_the_limit_is_413(client: httpx.Client) -> None:
    tensor, buffer = text_input("text", ["x" * (Settings().max_body_bytes + 1)])
    assert "limit" in v2_error(post_framed(client, {"inputs": [tensor]}, buffer), 413)


def test_the_schema_documents_the_binary_alternative(server: RunningServer) -> None:
    with server.client() as client:
        operation = client.get("/openapi.json").json()["paths"]["/v2/models/{name}/infer"]["post"]
    assert set(operation["requestBody"]["content"]) == {"application/json", "application/octet-stream"}
    assert HEADER in {p["name"] for p in operation["parameters"] if p["in"] == "header"}
    ok = operation["responses"]["200"]
    assert set(ok["content"]) == {"application/json", "application/octet-stream"} and HEADER in ok["headers"]


# ---- the shared raw layout --------------------------------------------------------------------


@pytest.mark.parametrize("datatype", sorted(raw.RAW_DTYPES))
def test_raw_numeric_round_trip(datatype: str) -> None:
    values = [True, False, True] if datatype == "BOOL" else [0, 1, 100]
    buffer = raw.data_to_raw(datatype, values)
    assert len(buffer) == 3 * np.dtype(raw.RAW_DTYPES[datatype]).itemsize
    assert raw.data_from_raw(datatype, buffer, "x") == values


def test_grpc_uses_the_shared_raw_layout() -> None:
    assert tensors.bytes_elements_to_raw is raw.bytes_elements_to_raw
    assert tensors.bytes_elements_from_raw is raw.bytes_elements_from_raw
