"""Operational routes: /healthz (liveness), /readyz (readiness) and /metrics (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.errors import documented_errors
from service.api.schemas_ops import LiveResponse, ReadyResponse
from service.core import Core
from service.errors import ERROR_TABLE, NotReady

NOT_READY_STATUS = ERROR_TABLE[NotReady.kind].http


def build_health_router(core: Core) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="Liveness: 200 while the process runs", responses=documented_errors(413, 500))
    async def healthz() -> LiveResponse:
        return LiveResponse(status="ok")

    @router.get(
        "/readyz",
        summary="Readiness: 200 when every model is loaded and the server is not draining",
        response_model=ReadyResponse,
        responses={
            **documented_errors(413, 500),
            NOT_READY_STATUS: {"model": ReadyResponse, "description": "Loading or draining"},
        },
    )
    async def readyz() -> JSONResponse:
        if core.state.ready:
            return JSONResponse({"status": "ready"})
        status = "draining" if core.state.draining else "loading"
        return JSONResponse({"status": status}, status_code=NOT_READY_STATUS)

    @router.get(
        "/metrics",
        summary="Prometheus metrics (text exposition format)",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, **documented_errors(413, 500)},
    )
    def metrics() -> Response:
        # A plain def: FastAPI runs it in its thread pool, so collecting never stalls the loop.
        return Response(generate_latest(core.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router
