"""create_app: the FastAPI application of the REST transport, wired to one Core."""

from __future__ import annotations

from fastapi import FastAPI

import service
from service.api.admission import Admission
from service.api.docs import install_docs
from service.api.errors import install_error_handlers
from service.api.middleware import RequestMiddleware
from service.api.routes_health import build_health_router
from service.api.routes_v1 import build_v1_router
from service.api.routes_v2 import build_v2_router
from service.core import Core

DESCRIPTION = (
    "CPU inference for SqueezeBERT: a task API (/v1) with transformers-pipeline-shaped results, "
    'KServe v2 REST (/v2), health and Prometheus metrics. Errors are `{"error": {"type", "message"}}` '
    '(`{"error": "..."}` under /v2).'
)


def create_app(core: Core) -> FastAPI:
    """The app does not own the core's lifecycle: whoever built the core loads and stops it."""
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
    )
    app.state.core = core
    install_error_handlers(app)
    install_docs(app, app.title)
    app.include_router(build_v1_router(core))
    app.include_router(build_v2_router(core))
    app.include_router(build_health_router(core))
    app.add_middleware(RequestMiddleware, max_body_bytes=core.settings.max_body_bytes, admission=Admission(core))
    return app
