"""ModelRegistry: model_store/<name>/ -> one Model per entry, each with its own lifecycle.

Every visible store entry is a model in state `loading`, then `ready` or `failed` (with the
reason). Entries are opened and warmed one at a time, each inside its own guard: a corrupt
manifest, a graph that does not load or a warm-up that fails marks that entry failed and the
next one is loaded as if nothing happened.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from service.batching.batcher import DynamicBatcher
from service.batching.types import BatcherObserver, BatchSpec, NullObserver
from service.config import Settings
from service.errors import ModelNotFound, NotReady, WrongTask
from service.lifecycle import FAILED, LOADING, READY, STOPPED, ModelStatus
from service.manifest import Manifest, ManifestError
from service.runtime.ort_runtime import OrtRuntime
from service.store import OpenedEntry, entry_dirs, one_core_runtime, open_entry
from service.tasks.base import ModelInfo, TaskHandler
from service.tasks.catalog import TASKS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelHandle:
    """A ready model: what a request needs to run."""

    name: str
    manifest: Manifest
    handler: TaskHandler[Any, Any, Any]  # the handler of TASKS[manifest.task]
    batcher: DynamicBatcher

    @property
    def task(self) -> str:
        return self.manifest.task


@dataclass
class Model:
    """One store entry and where it is in its lifecycle."""

    name: str
    state: str = LOADING
    reason: str = ""
    manifest: Manifest | None = None  # once read (a failed entry may have one)
    handle: ModelHandle | None = None  # once started

    def status(self) -> ModelStatus:
        m = self.manifest
        if m is None:
            return ModelStatus(self.name, "", [], 0, False, False, "", self.state, self.reason)
        labels = [m.id2label[i] for i in sorted(m.id2label)]
        ready = self.state == READY
        figures = m.parity.int8_vs_fp32
        return ModelStatus(
            self.name,
            m.task,
            labels,
            m.max_seq_len,
            m.trained,
            ready,
            m.precision,
            self.state,
            self.reason,
            int8_vs_fp32=None if figures is None else asdict(figures),
        )


StateListener = Callable[[str, str], None]  # (model name, state)
LoadTimer = Callable[[str, dict[str, float]], None]  # (model name, seconds per load phase)


def _open(path: Path, settings: Settings) -> OpenedEntry:
    """Slow (hashing, session creation): runs off the event loop."""
    return open_entry(path, settings.session_config(), settings.session_instances)


def _warm(runtimes: list[OrtRuntime], manifest: Manifest, settings: Settings, pad_id: int) -> None:
    """Every session at the largest shape it will see, so ORT's arena has its peak size before traffic."""
    if settings.warmup:
        for runtime in runtimes:
            runtime.warm_up(manifest.max_seq_len, settings.max_batch_tokens, pad_id)


def _open_one_core(path: Path, manifest: Manifest, settings: Settings, pad_id: int) -> OrtRuntime:
    """The one-core session for runs side by side, warmed up like the others (slow: off the loop)."""
    runtime = one_core_runtime(path, manifest, settings.session_config())
    _warm([runtime], manifest, settings, pad_id)
    return runtime


def _reason(exc: Exception) -> str:
    if isinstance(exc, ManifestError):
        return str(exc)
    first_line = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first_line}"[:500]


# A token through SqueezeBERT's linear layers costs ~12 C^2 multiply-adds; one (query, key) pair
# of attention costs 2 C, in fp32, which runs ~3.7x slower per multiply-add than the int8 GEMMs here
# (measured: ~830 int8 GOP/s vs ~225 fp32 GFLOP/s on 2 threads).
FP32_OVER_INT8 = 3.7
# Attention costs more than its multiply-adds: 64-wide per-head products, softmax and the padded
# view's copies. Raw runs of the base int8 graph put one attention place at 0.0014-0.0033 of a
# token through the linears (2-3x the count above); paired serving runs on mixed lengths were
# fastest from 6x on (1.05-1.13x over 1x at 16 and 64 callers, flat up to 24x: docs/benchmarks.md).
ATTENTION_OVERHEAD = 6.0


def attention_cost(manifest: Manifest) -> float:
    """One padded attention place, in units of one token through the linear layers."""
    hidden = int(manifest.architecture.get("hidden_size", 768))
    slowdown = FP32_OVER_INT8 if manifest.precision == "int8" else 1.0
    return ATTENTION_OVERHEAD * 2 * hidden * slowdown / (12 * hidden * hidden)


class ModelRegistry:
    def __init__(
        self,
        settings: Settings,
        observer_for: Callable[[str], BatcherObserver] | None = None,
        on_state: StateListener | None = None,
        on_loaded: LoadTimer | None = None,
    ) -> None:
        self.settings = settings
        self._observer_for = observer_for or (lambda _name: NullObserver())
        self._on_state = on_state or (lambda _name, _state: None)
        self._on_loaded = on_loaded or (lambda _name, _phases: None)
        self._models: dict[str, Model] = {}
        self._scanned = False
        self._loading = True
        self._side_by_side: asyncio.Task[None] | None = None

    async def load(self) -> None:
        """Find every entry (all `loading`), then open and warm each one inside its own guard."""
        paths = entry_dirs(self.settings.store_dir)
        for path in paths:
            self._set(Model(path.name), LOADING)
        self._scanned = True
        loop = asyncio.get_running_loop()
        ready: list[tuple[Path, Model, int]] = []  # and each one's pad id (for warm-ups)
        for path in paths:
            model = self._models[path.name]
            phases: dict[str, float] = {}  # open: manifest, hash, ORT sessions, tokenizer, one run
            started = time.monotonic()
            try:
                loaded = await loop.run_in_executor(None, _open, path, self.settings)
                model.manifest = loaded.manifest
                phases["open"] = time.monotonic() - started
                await loop.run_in_executor(
                    None, _warm, loaded.runtimes, loaded.manifest, self.settings, loaded.tokenizer.pad_id
                )
                phases["warm_up"] = time.monotonic() - started - phases["open"]
                model.handle = await self._start(path.name, loaded)
                phases["start"] = time.monotonic() - started - phases["open"] - phases["warm_up"]
            except Exception as exc:  # any failure of one entry is that entry's, never the server's
                model.reason = _reason(exc)
                if not isinstance(exc, ManifestError):
                    log.error("model %s failed to load", path.name, exc_info=exc)
                log.error("model %s not served: %s", path.name, model.reason)
                self._set(model, FAILED)
                continue
            self._set(model, READY)
            ready.append((path, model, loaded.tokenizer.pad_id))
            self._on_loaded(path.name, phases)
            m = loaded.manifest
            timing = ", ".join(f"{phase} {seconds:.2f}s" for phase, seconds in phases.items())
            log.info(
                "model %s ready in %.2fs (%s; %s, %s)", path.name, sum(phases.values()), timing, m.task, m.precision
            )
        self._loading = False
        if self.settings.side_by_side_slots():
            self._side_by_side = asyncio.create_task(self._add_side_by_side(ready), name="side-by-side-sessions")

    async def _add_side_by_side(self, ready: list[tuple[Path, Model, int]]) -> None:
        """After readiness (cold start does not wait for it): each ready model's one-core session,
        then its batcher runs batches side by side under load. A model whose one-core session
        fails keeps running every batch on its full session; nothing else changes."""
        slots = self.settings.side_by_side_slots()
        loop = asyncio.get_running_loop()
        for path, model, pad_id in ready:
            started = time.monotonic()
            assert model.manifest is not None and model.handle is not None
            try:
                runtime = await loop.run_in_executor(None, _open_one_core, path, model.manifest, self.settings, pad_id)
            except Exception as exc:
                log.warning("model %s: batches will not run side by side: %s", path.name, _reason(exc))
                continue
            if model.state != READY:
                continue
            model.handle.batcher.run_side_by_side(runtime, slots)
            seconds = time.monotonic() - started
            self._on_loaded(path.name, {"side_by_side": seconds})
            log.info("model %s: %d runs side by side under load (one-core session in %.2fs)", path.name, slots, seconds)

    def _set(self, model: Model, state: str) -> None:
        model.state = state
        self._models[model.name] = model
        self._on_state(model.name, state)

    async def _start(self, name: str, loaded: OpenedEntry) -> ModelHandle:
        m = loaded.manifest
        info = ModelInfo(id2label=m.id2label, problem_type=m.problem_type, max_seq_len=m.max_seq_len)
        task = TASKS[m.task]
        handler = task.make_handler(loaded.tokenizer, info, self.settings.limits())
        spec = BatchSpec(
            pad_values={"input_ids": loaded.tokenizer.pad_id, "attention_mask": 0, "token_type_ids": 0},
            token_level=task.token_level,
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
    def loading(self) -> bool:
        """True until every entry has been tried."""
        return self._loading

    def resolve(self, name: str | None, task: str | None) -> ModelHandle:
        """The named model (of `task`, if given), or the default model of the task: the one lookup.

        Raises ModelNotFound (no such entry), NotReady (loading, or the entry failed) or WrongTask.
        """
        if name is None:
            if task is None:
                raise ModelNotFound("a model name is required")
            candidates = self.serving(task)
            if candidates:
                return candidates[0]
            raise (NotReady if self._loading else ModelNotFound)(f"no model serving {task} is loaded")
        model = self._models.get(name)
        if model is None:
            if not self._scanned:
                raise NotReady("models are still loading")
            raise ModelNotFound(f"model {name[:100]!r} not found")
        if model.handle is None or model.state != READY:
            detail = f"failed to load: {model.reason}" if model.state == FAILED else "is still loading"
            raise NotReady(f"model {name!r} {detail}")
        if task is not None and model.handle.task != task:
            raise WrongTask(f"model {name!r} serves {model.handle.task}, not {task}")
        return model.handle

    def find(self, name: str) -> Model | None:
        """The store entry of that name, in whatever state (None: no such entry, or not scanned yet)."""
        return self._models.get(name)

    def serving(self, task: str) -> list[ModelHandle]:
        """The ready models of a task, by name."""
        return [
            m.handle
            for _, m in sorted(self._models.items())
            if m.state == READY and m.handle is not None and m.handle.task == task
        ]

    def statuses(self) -> list[ModelStatus]:
        return [m.status() for _, m in sorted(self._models.items())]

    async def stop(self, drain: bool = True, timeout_s: float = 30.0) -> None:
        if self._side_by_side is not None:
            self._side_by_side.cancel()
        handles = [m.handle for m in self._models.values() if m.handle is not None]
        await asyncio.gather(*(h.batcher.stop(drain=drain, timeout_s=timeout_s) for h in handles))
        for model in self._models.values():
            if model.state == READY:
                self._on_state(model.name, STOPPED)  # still listed as it was; serves no more
