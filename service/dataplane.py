"""DataPlane: the front door every transport calls, and the only one (after MLServer's DataPlane).

Health (live, ready, why not), the model list and each model's state and metadata, early
admission, per-request accounting and the one model lookup, infer per task, and the drain state.
Transports convert their wire format to and from the domain types, call this, and map the
ServiceErrors it raises through service.errors.ERROR_TABLE; they never see the registry.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from prometheus_client import generate_latest

from service.config import Settings
from service.errors import ModelNotFound, NotReady, Overloaded
from service.lifecycle import READY, ModelStatus
from service.metrics import Metrics, RequestLabels
from service.pipeline import InferenceService, ServiceResult
from service.registry import ModelHandle, ModelRegistry
from service.tasks.base import (
    Answer,
    AnswerParams,
    ClassifyParams,
    Entity,
    LabelScore,
    QAInput,
    TextInput,
    TokenClassifyParams,
)
from service.v2.types import MODEL_VERSION

SERVING, DRAINING, STOPPED = "serving", "draining", "stopped"


@dataclass
class Call:
    """One request on its resolved model: the handle is looked up once, when the call starts."""

    plane: DataPlane
    handle: ModelHandle
    labels: RequestLabels

    @property
    def model(self) -> str:
        return self.handle.name

    @property
    def task(self) -> str:
        return self.handle.task

    async def run(self, inputs: Sequence[Any], params: Any, deadline: float) -> ServiceResult[Any]:
        """Any task, with the inputs and parameters of the model's task (the v2 mapping uses this)."""
        self.labels.deadline = deadline  # a cancellation at or past it is counted as expired
        result: ServiceResult[Any] = await self.plane.service.run(self.handle, inputs, params, deadline)
        return result

    async def classify(
        self, inputs: Sequence[TextInput], params: ClassifyParams, deadline: float
    ) -> ServiceResult[LabelScore]:
        result: ServiceResult[LabelScore] = await self.run(inputs, params, deadline)
        return result

    async def tag_tokens(
        self, inputs: Sequence[TextInput], params: TokenClassifyParams, deadline: float
    ) -> ServiceResult[Entity]:
        result: ServiceResult[Entity] = await self.run(inputs, params, deadline)
        return result

    async def answer(self, inputs: Sequence[QAInput], params: AnswerParams, deadline: float) -> ServiceResult[Answer]:
        result: ServiceResult[Answer] = await self.run(inputs, params, deadline)
        return result


class DataPlane:
    def __init__(
        self, settings: Settings, registry: ModelRegistry, service: InferenceService, metrics: Metrics
    ) -> None:
        self.settings = settings
        self.service = service
        self._registry = registry
        self._metrics = metrics
        self._phase = SERVING

    @property
    def metrics(self) -> Metrics:
        """For the transports' own counters (e.g. refused API keys); requests are counted here."""
        return self._metrics

    # ---- health ---------------------------------------------------------------------------

    @property
    def live(self) -> bool:
        """The process is up and its loop answers; never depends on models."""
        return True

    @property
    def ready(self) -> bool:
        return self.readiness() == "ready"

    def readiness(self) -> str:
        """ready | loading | draining | failed (every entry tried, and too few of them are ready).

        Ready once every entry has been tried and at least one model is ready (with
        ready_requires_all_models: every entry is ready); never while draining.
        """
        if self._phase != SERVING:
            return "draining"
        if self._registry.loading:
            return "loading"
        states = [s.state for s in self._registry.statuses()]
        ok = all(s == READY for s in states) if self.settings.ready_requires_all_models else READY in states
        return "ready" if ok and states else "failed"

    @property
    def draining(self) -> bool:
        return self._phase != SERVING

    def begin_drain(self) -> None:
        """SIGTERM: not ready from now on, but requests are still served until the listeners close."""
        self._phase = DRAINING if self._phase == SERVING else self._phase

    def stop_accepting(self) -> None:
        """The listeners are closed: anything new (a kept-alive connection) is refused with 503."""
        self._phase = STOPPED

    # ---- models ---------------------------------------------------------------------------

    def models(self) -> list[ModelStatus]:
        """Every store entry found, with its state (loading, ready, failed and why)."""
        return self._registry.statuses()

    def model_status(self, name: str, version: str = "") -> ModelStatus:
        """The entry's status; ModelNotFound for an unknown name or version, NotReady before the scan."""
        check_version(version)
        model = self._registry.find(name)
        if model is None:
            if self._registry.loading and not self._registry.statuses():
                raise NotReady("models are still loading")
            raise ModelNotFound(f"model {name[:100]!r} not found")
        return model.status()

    def model_ready(self, name: str, version: str = "") -> bool:
        """Unknown name or version: ModelNotFound. Before the store is scanned every name may exist: False."""
        try:
            status = self.model_status(name, version)
        except NotReady:
            return False
        return status.state == READY and not self.draining

    def model_metadata(self, name: str, version: str = "") -> ModelStatus:
        """A ready model's status (metadata needs its manifest); NotReady otherwise."""
        status = self.model_status(name, version)
        if status.state != READY:
            self._registry.resolve(name, None)  # raises the NotReady that says why
        return status

    def metrics_exposition(self) -> bytes:
        return generate_latest(self._metrics.registry)

    # ---- requests -------------------------------------------------------------------------

    def deadline_from(self, timeout_s: float | None) -> float:
        """Absolute deadline: the caller's timeout, capped by the server's request timeout."""
        return self.service.deadline_from(timeout_s)

    @contextmanager
    def track(self, transport: str, task: str, model: str = "") -> Iterator[RequestLabels]:
        """Count one request (in flight, then duration and outcome); fill in labels as they are learnt."""
        with self._metrics.track(transport, task, model) as labels:
            yield labels

    @contextmanager
    def call(self, transport: str, task: str | None, model: str | None, version: str = "") -> Iterator[Call]:
        """Count the request and resolve its model once (task None: the model decides, as in v2).

        The labels name a known model even when the request fails (wrong task, bad input); an
        unknown name is labelled "unknown" so clients cannot grow the series.
        """
        with self.track(transport, task or "unknown") as labels:
            if self._phase == STOPPED:
                raise NotReady("the server is shutting down; retry on another instance")
            check_version(version)
            known = self._registry.find(model) if model is not None else None
            if known is not None and known.manifest is not None:
                labels.model = known.name
                labels.task = task or known.manifest.task
            handle = self._registry.resolve(model, task)
            labels.model, labels.task = handle.name, handle.task
            yield Call(self, handle, labels)

    def early_refusal(self, transport: str, task: str | None, model: str | None) -> Overloaded | None:
        """Refuse before parsing when every model the request could reach has a full queue.

        Either `task` (any model of the task may be named in the body) or `model` (v2). Anything
        in doubt (unknown model, loading, draining) returns None: the normal path answers it.
        The refusal is counted here, as the normal path would count it.
        """
        if self._phase == STOPPED:
            return None
        if model is not None:
            found = self._registry.find(model)
            handles = [found.handle] if found is not None and found.handle is not None and found.state == READY else []
        else:
            handles = self._registry.serving(task) if task is not None else []
        if not handles or not all(h.batcher.is_full() for h in handles):
            return None
        names = ", ".join(repr(h.name) for h in handles)
        error = Overloaded(
            f"the queue of {names} is full", retry_after_s=min(h.batcher.retry_after_s() for h in handles)
        )
        try:
            with self.track(transport, handles[0].task, handles[0].name if len(handles) == 1 else ""):
                raise error
        except Overloaded:
            pass
        return error

    def record_refusal(
        self, transport: str, task: str | None, model: str | None, outcome: str, duration_s: float
    ) -> None:
        """Count a request the transport answered before it could reach call() (body limit, bad encoding).

        Labelled like call() would: a known model by name, an unknown one as "unknown".
        """
        labels = RequestLabels(task or "unknown")
        found = self._registry.find(model) if model is not None else None
        if found is not None and found.manifest is not None:
            labels.model, labels.task = found.name, task or found.manifest.task
        self._metrics.record(transport, labels, outcome, duration_s)


def check_version(version: str) -> None:
    """Every model has exactly one version; any other names nothing (404 / NOT_FOUND)."""
    if version not in ("", MODEL_VERSION):
        raise ModelNotFound(f"model version {version[:20]!r} does not exist (only {MODEL_VERSION!r})")
