"""The REST transport: FastAPI app for the /v1 task API, KServe v2 REST, health and metrics."""

from service.api.app import create_app

__all__ = ["create_app"]
