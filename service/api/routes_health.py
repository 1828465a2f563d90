"""Operational routes: /healthz (liveness), /readyz (readiness) and /metrics (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from service.api.errors import ANY_ROUTE_ERRORS, documented_errors
from service.api.schemas_ops import LiveResponse, ReadyResponse
from service.dataplane import DataPlane
from service.errors import ERROR_TABLE, NotReady

NOT_READY_STATUS = ERROR_TABLE[NotReady.kind].http


def build_health_router(plane: DataPlane) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get(
        "/healthz", summary="Liveness: 200 while the process runs", responses=documented_errors(*ANY_ROUTE_ERRORS)
    )
    async def healthz() -> LiveResponse:
        return LiveResponse(status="ok")

    @router.get(
        "/readyz",
        summary="Readiness: 200 when every model is loaded and the server is not draining",
        response_model=ReadyResponse,
        responses={
            **documented_errors(*ANY_ROUTE_ERRORS),
            NOT_READY_STATUS: {"model": ReadyResponse, "description": "Loading, draining, or no model could be loaded"},
        },
    )
    async def readyz() -> JSONResponse:
        status = plane.readiness()
        return JSONResponse({"status": status}, status_code=200 if status == "ready" else NOT_READY_STATUS)

    @router.get(
        "/metrics",
        summary="Prometheus metrics (text exposition format)",
        response_class=Response,
        responses={
            200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
            **documented_errors(*ANY_ROUTE_ERRORS),
        },
    )
    def metrics() -> Response:
        # A plain def: FastAPI runs it in its thread pool, so collecting never stalls the loop.
        return Response(plane.metrics_exposition(), media_type=CONTENT_TYPE_LATEST)

    return router
