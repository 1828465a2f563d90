"""Core: everything the transports share (settings, service, state, metrics), built once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from service.config import Settings
from service.metrics import Metrics
from service.pipeline import InferenceService
from service.registry import ModelRegistry
from service.state import ServerState


@dataclass(frozen=True)
class Core:
    settings: Settings
    service: InferenceService
    state: ServerState
    metrics: Metrics
    registry: ModelRegistry
    pool: ThreadPoolExecutor


def build_core(settings: Settings, prometheus: CollectorRegistry | None = None) -> Core:
    """Wire the core without loading models (call `await core.registry.load()` for that)."""
    metrics = Metrics(prometheus or CollectorRegistry())
    registry = ModelRegistry(settings, metrics.observer_for)
    pool = ThreadPoolExecutor(settings.tokenizer_threads, thread_name_prefix="tokenize")
    service = InferenceService(registry, pool, settings.request_timeout_s, metrics)
    return Core(settings, service, ServerState(registry), metrics, registry, pool)


async def load_models(core: Core) -> None:
    await core.registry.load()
    for status in core.registry.statuses():
        core.metrics.model_ready.labels(status.name).set(1)


async def stop_core(core: Core, timeout_s: float = 30.0) -> None:
    """Finish queued work, then release the threads."""
    await core.registry.stop(drain=True, timeout_s=timeout_s)
    for status in core.registry.statuses():
        core.metrics.model_ready.labels(status.name).set(0)
    core.pool.shutdown(wait=False, cancel_futures=True)
