"""ModelRegistry: model_store/<name>/ -> ModelHandle (manifest, task handler, runtimes, batcher).

Loads every store entry at startup, warms each up, and tracks per-model readiness. A broken
entry costs one log line and is skipped; the others are served.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from service.batching.batcher import DynamicBatcher
from service.batching.types import BatcherObserver, BatchSpec, NullObserver
from service.config import Settings
from service.errors import ModelNotFound, NotReady, WrongTask
from service.manifest import Manifest, ManifestError
from service.store import OpenedEntry, entry_dirs, open_entry
from service.tasks.base import ModelInfo
from service.tasks.question_answering import QuestionAnsweringHandler
from service.tasks.sequence_classification import SequenceClassificationHandler
from service.tasks.token_classification import TokenClassificationHandler

log = logging.getLogger(__name__)

HANDLERS: dict[str, Callable[..., Any]] = {
    "sequence-classification": SequenceClassificationHandler,
    "token-classification": TokenClassificationHandler,
    "question-answering": QuestionAnsweringHandler,
}
TOKEN_LEVEL = {"sequence-classification": (False,), "token-classification": (True,), "question-answering": (True, True)}


@dataclass(frozen=True)
class ModelHandle:
    name: str
    manifest: Manifest
    handler: Any  # TaskHandler for manifest.task
    batcher: DynamicBatcher

    @property
    def task(self) -> str:
        return self.manifest.task


@dataclass(frozen=True)
class ModelStatus:
    name: str
    task: str
    labels: list[str]
    max_seq_len: int
    trained: bool
    ready: bool
    precision: str
    # The export's held-out int8 figures (REST /v1/models); gRPC's ModelInfo does not carry them.
    int8_vs_fp32: dict[str, Any] | None = field(default=None, compare=False)


def _figures(manifest: Manifest) -> dict[str, Any] | None:
    figures = manifest.parity.int8_vs_fp32
    return None if figures is None else asdict(figures)


def _load_blocking(path: Path, settings: Settings) -> OpenedEntry:
    """Everything slow (hashing, session creation, warm-up) happens here, off the event loop."""
    entry = open_entry(path, settings.session_config(), settings.session_instances)
    if settings.warmup:
        for runtime in entry.runtimes:
            runtime.warm_up(entry.manifest.max_seq_len, settings.max_batch_tokens, entry.tokenizer.pad_id)
    return entry


# A token through SqueezeBERT's linear layers costs ~12 C^2 multiply-adds; one (query, key) pair
# of attention costs 2 C, in fp32, which runs ~3.7x slower per multiply-add than the int8 GEMMs here
# (measured: ~830 int8 GOP/s vs ~225 fp32 GFLOP/s on 2 threads).
FP32_OVER_INT8 = 3.7


def attention_cost(manifest: Manifest) -> float:
    """One padded attention place, in units of one token through the linear layers."""
    hidden = int(manifest.architecture.get("hidden_size", 768))
    slowdown = FP32_OVER_INT8 if manifest.precision == "int8" else 1.0
    return 2 * hidden * slowdown / (12 * hidden * hidden)


class ModelRegistry:
    def __init__(self, settings: Settings, observer_for: Callable[[str], BatcherObserver] | None = None) -> None:
        self.settings = settings
        self._observer_for = observer_for or (lambda _name: NullObserver())
        self._models: dict[str, ModelHandle] = {}
        self._loading = True
        self.broken: dict[str, str] = {}

    async def load(self) -> None:
        """Load every entry of the store, one at a time (each load uses all cores already)."""
        loop = asyncio.get_running_loop()
        for path in entry_dirs(self.settings.store_dir):
            try:
                loaded = await loop.run_in_executor(None, _load_blocking, path, self.settings)
            except ManifestError as exc:
                self.broken[path.name] = str(exc)
                log.error("model %s not served: %s", path.name, exc)
                continue
            self._models[path.name] = await self._start(path.name, loaded)
            log.info("model %s ready (%s, %s)", path.name, loaded.manifest.task, loaded.manifest.precision)
        self._loading = False

    async def _start(self, name: str, loaded: OpenedEntry) -> ModelHandle:
        m = loaded.manifest
        info = ModelInfo(id2label=m.id2label, problem_type=m.problem_type, max_seq_len=m.max_seq_len)
        handler = HANDLERS[m.task](loaded.tokenizer, info, self.settings.limits())
        spec = BatchSpec(
            pad_values={"input_ids": loaded.tokenizer.pad_id, "attention_mask": 0, "token_type_ids": 0},
            token_level=TOKEN_LEVEL[m.task],
            layout=m.layout,
            attention_cost=attention_cost(m),
        )
        batcher = DynamicBatcher(
            loaded.runtimes * self.settings.runs_per_session,
            spec,
            self.settings.batcher_config(),
            self._observer_for(name),
            name=name,
        )
        await batcher.start()
        return ModelHandle(name, m, handler, batcher)

    @property
    def ready(self) -> bool:
        return not self._loading and bool(self._models)

    def resolve(self, name: str | None, task: str) -> ModelHandle:
        """The named model, or the default model for the task (the first by name serving it)."""
        if name is None:
            candidates = self.serving(task)
            if not candidates:
                raise (NotReady if self._loading else ModelNotFound)(f"no model serving {task} is loaded")
            name = candidates[0].name
        handle = self.get(name)
        if handle.task != task:
            raise WrongTask(f"model {name!r} serves {handle.task}, not {task}")
        return handle

    def serving(self, task: str) -> list[ModelHandle]:
        """The loaded models of a task, by name."""
        return [h for _, h in sorted(self._models.items()) if h.task == task]

    def find(self, name: str) -> ModelHandle | None:
        return self._models.get(name)

    def get(self, name: str) -> ModelHandle:
        handle = self.find(name)
        if handle is None:
            if self._loading:
                raise NotReady("models are still loading")
            raise ModelNotFound(f"model {name[:100]!r} not found")
        return handle

    def statuses(self) -> list[ModelStatus]:
        return [
            ModelStatus(
                name=h.name,
                task=h.task,
                labels=[h.manifest.id2label[i] for i in sorted(h.manifest.id2label)],
                max_seq_len=h.manifest.max_seq_len,
                trained=h.manifest.trained,
                ready=True,
                precision=h.manifest.precision,
                int8_vs_fp32=_figures(h.manifest),
            )
            for h in sorted(self._models.values(), key=lambda h: h.name)
        ]

    async def stop(self, drain: bool = True, timeout_s: float = 30.0) -> None:
        await asyncio.gather(*(h.batcher.stop(drain=drain, timeout_s=timeout_s) for h in self._models.values()))
