"""create_app: the FastAPI application of the REST transport, wired to one Core."""

from __future__ import annotations

from fastapi import FastAPI

import service
from service.api.errors import install_error_handlers
from service.api.middleware import RequestMiddleware
from service.api.routes_health import build_health_router
from service.api.routes_v1 import build_v1_router
from service.api.routes_v2 import build_v2_router
from service.dataplane import DataPlane

DESCRIPTION = (
    "CPU inference for SqueezeBERT: a task API (/v1) with transformers-pipeline-shaped results, "
    'KServe v2 REST (/v2), health and Prometheus metrics. Errors are `{"error": {"type", "message"}}` '
    '(`{"error": "..."}` under /v2).'
)


def create_app(plane: DataPlane, early_admission: bool = True) -> FastAPI:
    """The app does not own the models' lifecycle: whoever built the core loads and stops it."""
    # strict_content_type=False: tritonclient posts JSON without a Content-Type header.
    # redirect_slashes=False: an API answers 404 for a path it does not serve instead of a 307 guess.
    app = FastAPI(
        title="squeezeserve",
        version=service.__version__,
        description=DESCRIPTION,
        strict_content_type=False,
        redirect_slashes=False,
    )
    install_error_handlers(app)
    app.include_router(build_v1_router(plane))
    app.include_router(build_v2_router(plane))
    app.include_router(build_health_router(plane))
    app.add_middleware(RequestMiddleware, plane=plane, early_admission=early_admission)
    return app
