"""ServerState: liveness, readiness and draining, shared by both transports and the lifecycle."""

from __future__ import annotations

from service.registry import ModelRegistry


class ServerState:
    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self.draining = False

    @property
    def live(self) -> bool:
        """The process is up and its loop answers; never depends on models."""
        return True

    @property
    def ready(self) -> bool:
        """Every model loaded and warmed, and not shutting down."""
        return self.registry.ready and not self.draining
