"""Browser-safe edges of the REST transport: 415 for non-JSON bodies, CORS, allowed Host names.

A page on any origin can make a visitor's browser POST a "simple" request (text/plain or a form
type, no preflight) to a server on localhost; DNS rebinding can make it read GET routes. These
tests send exactly those requests to the real server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness import RunningServer, running_server, settings_for, single_model_store

CLS = "sequence-classification"
BODY = b'{"inputs": "a fine film"}'
V2_BODY = b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a fine film"]}]}'
SIMPLE_TYPES = ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data"]
ORIGIN = "https://app.example"


@pytest.mark.parametrize("content_type", SIMPLE_TYPES)
def test_non_json_content_types_get_415_before_any_work(client: httpx.Client, content_type: str) -> None:
    for path, body in (("/v1/classify", BODY), (f"/v2/models/{CLS}/infer", V2_BODY)):
        headers = {"Content-Type": content_type, "X-Request-Id": "refused-415"}
        response = client.post(path, content=body, headers=headers)
        assert response.status_code == 415 and response.headers["x-request-id"] == "refused-415", path
        assert "application/json" in str(response.json()["error"])


@pytest.mark.parametrize("content_type", [None, "application/json", "application/json; charset=utf-8"])
def test_json_or_no_content_type_is_served(client: httpx.Client, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    for path, body in (("/v1/classify", BODY), (f"/v2/models/{CLS}/infer", V2_BODY)):
        response = client.post(path, content=body, headers=headers)
        assert response.status_code == 200, (path, response.text)


@pytest.fixture(scope="module")
def guarded(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """CORS for one origin, one allowed Host name, and an API key."""
    one = single_model_store(store, tmp_path_factory.mktemp("one-model"))
    keys = tmp_path_factory.mktemp("keys") / "keys"
    keys.write_text("browser-test-key\n")
    settings = settings_for(one, cors_origins=(ORIGIN,), allowed_hosts=("api.example",), api_keys_file=keys)
    with running_server(settings) as server:
        yield server


def test_cors_preflight_and_headers_for_the_allowed_origin_only(guarded: RunningServer) -> None:
    preflight = {"Host": "api.example", "Access-Control-Request-Method": "POST"}
    preflight["Access-Control-Request-Headers"] = "authorization, content-type"
    with guarded.client() as client:
        ok = client.options("/v1/classify", headers={**preflight, "Origin": ORIGIN})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == ORIGIN
        assert "authorization" in ok.headers["access-control-allow-headers"].lower()
        other = client.options("/v1/classify", headers={**preflight, "Origin": "https://evil.example"})
        assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
        # The browser reads refusals too: a 401 carries the CORS headers.
        refused = client.get("/v1/models", headers={"Host": "api.example", "Origin": ORIGIN})
        assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == ORIGIN
        auth = {"Host": "api.example", "Origin": ORIGIN, "Authorization": "Bearer browser-test-key"}
        served = client.post("/v1/classify", content=BODY, headers={**auth, "Content-Type": "application/json"})
        assert served.status_code == 200 and served.headers["access-control-allow-origin"] == ORIGIN
        assert "x-request-id" in served.headers["access-control-expose-headers"].lower()


def test_openapi_declares_the_bearer_scheme_on_guarded_routes_only(guarded: RunningServer) -> None:
    with guarded.client() as client:
        schema = client.get("/openapi.json", headers={"Host": "api.example"}).json()
    scheme = schema["components"]["securitySchemes"]["apiKey"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")  # Swagger UI's "Authorize" sends it
    classify = schema["paths"]["/v1/classify"]["post"]
    assert classify["security"] == [{"apiKey": []}] and "401" in classify["responses"]
    assert "security" not in schema["paths"]["/healthz"]["get"]


def test_only_allowed_host_names_are_served(guarded: RunningServer) -> None:
    with guarded.client() as client:
        for host in ("api.example", "API.example:8000"):
            assert client.get("/healthz", headers={"Host": host}).status_code == 200, host
        for host in ("rebound.attacker.example", "127.0.0.1"):
            response = client.get("/healthz", headers={"Host": host})
            assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_host", host
