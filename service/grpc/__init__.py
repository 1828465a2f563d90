"""gRPC transport: squeezeserve.v1 task API, KServe v2 inference, health and reflection on grpc.aio."""

from service.grpc.health import ReadinessHealthServicer
from service.grpc.server import SERVICE_NAMES, build_grpc_server

__all__ = ["SERVICE_NAMES", "ReadinessHealthServicer", "build_grpc_server"]
