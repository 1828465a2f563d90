"""GuardMiddleware (pure ASGI): Host names, API keys and Content-Type, checked before the body is read.

Runs outside RequestMiddleware, so a refused request costs no body read, no routing and no parsing.
- Host: with allowed_hosts set, any other Host header gets 400 (DNS rebinding cannot read the API).
- API key: with keys configured, every path outside the exempt families needs
  `Authorization: Bearer <key>`; otherwise 401 + WWW-Authenticate, counted in the metrics.
  The header is never logged.
- Content-Type: a body-carrying request labelled anything but JSON gets 415, so a browser's
  "simple" cross-origin POST (text/plain, form types: no CORS preflight) cannot make us work.
  A missing Content-Type stays accepted (tritonclient sends none), and so does
  application/octet-stream with the v2 binary extension's Inference-Header-Content-Length.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.binary_v2 import BINARY_HEADER
from service.api.docs import DOCS_ASSET_PATHS
from service.api.errors import error_response
from service.api.middleware import request_id_of
from service.metrics import Metrics
from service.security import ApiKeys

TRANSPORT = "http"
EXEMPT_PATHS = {
    "health": frozenset({"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"}),
    "metrics": frozenset({"/metrics"}),
    "docs": frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", *DOCS_ASSET_PATHS}),
}
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
JSON_TYPES = frozenset({"application/json"})
BINARY_TYPE = "application/octet-stream"
REALM = 'Bearer realm="squeezeserve"'
MISSING_KEY = "an API key is required: Authorization: Bearer <key>"
INVALID_KEY = "the API key is not valid"
SECURITY_SCHEME = "apiKey"


def exempt_paths(families: frozenset[str]) -> frozenset[str]:
    return frozenset().union(*(EXEMPT_PATHS[f] for f in families))


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def _host_name(host: str) -> str:
    if host.startswith("["):  # [::1]:8000
        return host[1 : host.find("]")].lower() if "]" in host else host.lower()
    return host.rsplit(":", 1)[0].lower() if host.count(":") == 1 else host.lower()


def media_type_accepted(scope: Scope) -> bool:
    content_type = _header(scope, b"content-type")
    if content_type is None:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    if media in JSON_TYPES or (media.startswith("application/") and media.endswith("+json")):
        return True
    return media == BINARY_TYPE and _header(scope, BINARY_HEADER.lower().encode()) is not None


class GuardMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        api_keys: ApiKeys | None = None,
        auth_exempt: frozenset[str] = frozenset(),
        allowed_hosts: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.api_keys = api_keys
        self.exempt = exempt_paths(auth_exempt)
        self.allowed_hosts = frozenset(h.lower() for h in allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, kind, message, headers = refusal
        # The same X-Request-Id the request would have had from RequestMiddleware (and the access log).
        state = scope.setdefault("state", {})
        state["request_id"] = state.get("request_id") or request_id_of(scope)
        headers["X-Request-Id"] = state["request_id"]
        await error_response(scope["path"], status, kind, message, headers)(scope, receive, send)

    def _refusal(self, scope: Scope) -> tuple[int, str, str, dict[str, str]] | None:
        """(status, error type, message, headers) when the request must be refused, else None."""
        if self.allowed_hosts and not self._host_allowed(scope):
            return 400, "invalid_host", "the Host header is not an allowed name", {}
        if self.api_keys is not None and scope["path"] not in self.exempt:
            reason = self.api_keys.verify(_header(scope, b"authorization"))
            if reason is not None:
                self.metrics.unauthenticated.labels(TRANSPORT, reason).inc()
                if reason == "missing":
                    return 401, "unauthenticated", MISSING_KEY, {"WWW-Authenticate": REALM}
                return 401, "unauthenticated", INVALID_KEY, {"WWW-Authenticate": REALM + ', error="invalid_token"'}
        if scope.get("method") in BODY_METHODS and not media_type_accepted(scope):
            return 415, "unsupported_media_type", "send the body as application/json (or with no Content-Type)", {}
        return None

    def _host_allowed(self, scope: Scope) -> bool:
        host = _header(scope, b"host")
        return host is not None and _host_name(host) in self.allowed_hosts


def document_bearer_auth(app: FastAPI, exempt: frozenset[str]) -> None:
    """With API keys on: the OpenAPI document declares the Bearer scheme and the 401 of every guarded route."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {}).setdefault("securitySchemes", {})[SECURITY_SCHEME] = {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key from the server's SQZ_API_KEYS_FILE",
        }
        for path, operations in schema.get("paths", {}).items():
            if path in exempt:
                continue
            for operation in operations.values():
                operation["security"] = [{SECURITY_SCHEME: []}]
                operation.setdefault("responses", {})["401"] = {"description": "Missing or invalid API key"}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
