"""build_grpc_server: the grpc.aio server with the v1 task API, KServe v2, health and reflection."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from service import tracing
from service.dataplane import DataPlane
from service.grpc.generated.inference import grpc_service_pb2, grpc_service_pb2_grpc
from service.grpc.generated.squeezeserve.v1 import squeezeserve_pb2, squeezeserve_pb2_grpc
from service.grpc.guard import AuthInterceptor
from service.grpc.health import ReadinessHealthServicer
from service.grpc.inference_servicer import InferenceServicer
from service.grpc.intake import RequestIntake
from service.grpc.interceptors import AccessLogInterceptor, TracingInterceptor
from service.grpc.kserve_servicer import KServeServicer
from service.security import ApiKeys, TlsFiles, load_api_keys

V1_SERVICE = squeezeserve_pb2.DESCRIPTOR.services_by_name["Inference"].full_name
KSERVE_SERVICE = grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
SERVICE_NAMES: tuple[str, ...] = (V1_SERVICE, KSERVE_SERVICE, health.SERVICE_NAME)


MAX_CONNECTION_AGE_MS = 5 * 60 * 1000
MAX_CONNECTION_AGE_GRACE_MS = 30 * 1000


def build_grpc_server(
    plane: DataPlane,
    port: int | None = None,
    health_servicer: ReadinessHealthServicer | None = None,
    api_keys: ApiKeys | None = None,
    tls: TlsFiles | None = None,
) -> tuple[grpc.aio.Server, int]:
    """A server bound to plane.settings.host (port None: settings.grpc_port; 0: any free port).

    Returns the server (not started: `await server.start()`) and the bound port. Health follows
    plane.ready by itself; pass your own `health_servicer` to keep a handle on its switch
    (`health_servicer.set_serving(False)` when draining). Call on the loop the server runs on.
    api_keys: the server's keys (shared with REST); None: from the settings. tls: serve TLS
    (and require client certificates when it has a client CA) instead of plaintext.
    """
    options = [
        # gRPC sets SO_REUSEPORT by default: a second server on a taken port would bind silently.
        ("grpc.so_reuseport", 0),
        # HTTP/2 connections are long-lived and pin a client to one replica; recycling them makes
        # clients re-resolve and spread over replicas added by the autoscaler.
        ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_MS),
        ("grpc.max_connection_age_grace_ms", MAX_CONNECTION_AGE_GRACE_MS),
        # One request size limit for both transports: larger messages are RESOURCE_EXHAUSTED (REST: 413).
        ("grpc.max_receive_message_length", plane.settings.max_body_bytes),
    ]
    keys = api_keys or load_api_keys(plane.settings)
    # Outermost first: refusals are traced and logged too; unauthenticated calls never reach intake.
    interceptors: list[grpc.aio.ServerInterceptor] = [TracingInterceptor()] if tracing.enabled() else []
    if plane.settings.access_log_enabled():
        interceptors.append(AccessLogInterceptor())
    if keys is not None:
        interceptors.append(AuthInterceptor(keys, plane.metrics, plane.settings.auth_exempt))
    interceptors.append(RequestIntake(plane))
    server = grpc.aio.server(options=options, interceptors=interceptors)
    squeezeserve_pb2_grpc.add_InferenceServicer_to_server(InferenceServicer(plane), server)  # type: ignore[no-untyped-call]
    grpc_service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(KServeServicer(plane), server)  # type: ignore[no-untyped-call]
    health_pb2_grpc.add_HealthServicer_to_server(
        health_servicer or ReadinessHealthServicer(plane, SERVICE_NAMES), server
    )
    reflection.enable_server_reflection((*SERVICE_NAMES, reflection.SERVICE_NAME), server)
    address = _address(plane.settings.host, plane.settings.grpc_port if port is None else port)
    if tls is None:
        return server, server.add_insecure_port(address)
    credentials = grpc.ssl_server_credentials(
        [(tls.private_key, tls.cert_chain)],
        root_certificates=tls.client_ca,
        require_client_auth=tls.requires_client_cert,
    )
    return server, server.add_secure_port(address, credentials)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
