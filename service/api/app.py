"""create_app: the FastAPI application of the REST transport, wired to one Core."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

import service
from service import tracing
from service.api.access_log import AccessLogMiddleware
from service.api.binary_v2 import BINARY_HEADER
from service.api.docs import install_docs
from service.api.errors import install_error_handlers
from service.api.guard import GuardMiddleware, document_bearer_auth, exempt_paths
from service.api.limits import TIMEOUT_HEADER
from service.api.middleware import REQUEST_ID_HEADER, TIMING_HEADERS, RequestMiddleware
from service.api.routes_health import build_health_router
from service.api.routes_v1 import build_v1_router
from service.api.routes_v2 import build_v2_router
from service.api.tracing import TracingMiddleware
from service.dataplane import DataPlane
from service.security import ApiKeys, load_api_keys

DESCRIPTION = (
    "CPU inference for SqueezeBERT: a task API (/v1) with transformers-pipeline-shaped results, "
    'KServe v2 REST (/v2), health and Prometheus metrics. Errors are `{"error": {"type", "message"}}` '
    '(`{"error": "..."}` under /v2).'
)


def create_app(plane: DataPlane, api_keys: ApiKeys | None = None, early_admission: bool = True) -> FastAPI:
    """The app does not own the models' lifecycle: whoever built the core loads and stops it.

    api_keys: the server's keys (shared with gRPC, reloaded on SIGHUP); None: from the settings.
    """
    # strict_content_type=False: tritonclient posts JSON without a Content-Type header.
    # redirect_slashes=False: an API answers 404 for a path it does not serve instead of a 307 guess.
    app = FastAPI(
        title="squeezeserve",
        version=service.__version__,
        description=DESCRIPTION,
        strict_content_type=False,
        redirect_slashes=False,
        docs_url=None,  # install_docs serves /docs and /redoc from local assets
        redoc_url=None,
        # Recent FastAPI (0.165 here) traces, meters and logs every request itself once any global
        # OpenTelemetry provider exists (e.g. under `opentelemetry-instrument`): probes included,
        # REST only, beside our own request spans (api/tracing.py) and Prometheus metrics. Off,
        # so the request span has one owner; it also spares three provider lookups per request.
        # Older FastAPI keeps the key in `app.extra`.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_error_handlers(app)
    install_docs(app, app.title)
    app.include_router(build_v1_router(plane))
    app.include_router(build_v2_router(plane))
    app.include_router(build_health_router(plane))
    settings = plane.settings
    # Outermost last: CORS answers preflights and labels every response, refusals included;
    # the guard refuses before RequestMiddleware reads the body.
    app.add_middleware(RequestMiddleware, plane=plane, early_admission=early_admission)
    keys = api_keys or load_api_keys(settings)
    app.add_middleware(
        GuardMiddleware,
        metrics=plane.metrics,
        api_keys=keys,
        auth_exempt=settings.auth_exempt,
        allowed_hosts=settings.allowed_hosts,
    )
    if keys is not None:
        document_bearer_auth(app, exempt_paths(settings.auth_exempt))
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", REQUEST_ID_HEADER.decode(), TIMEOUT_HEADER, BINARY_HEADER],
            expose_headers=[REQUEST_ID_HEADER.decode(), *TIMING_HEADERS, BINARY_HEADER],
            max_age=600,
        )
    if settings.access_log_enabled():
        app.add_middleware(AccessLogMiddleware)
    if tracing.enabled():
        app.add_middleware(TracingMiddleware)
    return app
