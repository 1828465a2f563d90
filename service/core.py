"""Core: everything the process shares (settings, data plane, metrics, registry), built once.

Transports get only `core.plane`; the registry, pool and service are for the lifecycle
(service/server.py) and for tests that drive the core directly.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from service.config import Settings
from service.dataplane import DataPlane
from service.lifecycle import READY
from service.metrics import Metrics
from service.pipeline import InferenceService
from service.registry import ModelRegistry


@dataclass(frozen=True)
class Core:
    settings: Settings
    plane: DataPlane
    service: InferenceService
    metrics: Metrics
    registry: ModelRegistry
    pool: ThreadPoolExecutor


def build_core(settings: Settings, prometheus: CollectorRegistry | None = None) -> Core:
    """Wire the core without loading models (`await load_models(core)` does that)."""
    metrics = Metrics(prometheus or CollectorRegistry())

    def on_state(model: str, state: str) -> None:
        metrics.model_ready.labels(model).set(1 if state == READY else 0)

    def on_loaded(model: str, phases: dict[str, float]) -> None:
        for phase, seconds in phases.items():
            metrics.model_load.labels(model, phase).set(seconds)

    registry = ModelRegistry(settings, metrics.observer_for, on_state, on_loaded)
    pool = ThreadPoolExecutor(settings.tokenizer_threads, thread_name_prefix="tokenize")
    service = InferenceService(
        registry, pool, settings.request_timeout_s, metrics, settings.limits(), settings.max_queued_rows
    )
    plane = DataPlane(settings, registry, service, metrics)
    return Core(settings, plane, service, metrics, registry, pool)


async def load_models(core: Core) -> None:
    await core.registry.load()


async def stop_core(core: Core, timeout_s: float = 30.0) -> None:
    """Finish queued work (within timeout_s), then release the threads."""
    await core.registry.stop(drain=True, timeout_s=timeout_s)
    core.pool.shutdown(wait=False, cancel_futures=True)
