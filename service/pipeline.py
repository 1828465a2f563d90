"""InferenceService: one request on one resolved model (transports reach it through the DataPlane).

Per request: refuse what can never be served (too many inputs or rows) as InvalidInput, then
admission (Overloaded before tokenizing), tokenize, submit the rows to the model's batcher with
the request deadline, await the rows, post-process. Tokenizing and post-processing run on the
loop when they are predicted to be small and in the thread pool otherwise (service/inline.py).
Everything raised is a ServiceError.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from service import tracing
from service.batching.rows import RowResult
from service.errors import DeadlineExceeded, InvalidInput, RuntimeFailure, ServiceError
from service.inline import InlineWork
from service.metrics import Metrics
from service.registry import ModelHandle, ModelRegistry
from service.tasks.base import (
    Answer,
    AnswerParams,
    ClassifyParams,
    Entity,
    LabelScore,
    Limits,
    Prepared,
    QAInput,
    TextInput,
    TokenClassifyParams,
    text_chars,
)
from service.tasks.checks import check_count

log = logging.getLogger(__name__)
_LATE = "the request deadline passed before inference finished"  # DeadlineExceeded while a row waits
T = TypeVar("T")


@dataclass(frozen=True)
class Timings:
    """Where a request's time went; queue and inference are the slowest row's."""

    tokenize_s: float
    queue_s: float
    inference_s: float
    postprocess_s: float
    total_s: float


@dataclass(frozen=True)
class ServiceResult(Generic[T]):
    model: str
    results: list[list[T]]  # one list per input
    timings: Timings


class InferenceService:
    def __init__(
        self,
        registry: ModelRegistry,
        tokenize_pool: ThreadPoolExecutor,
        request_timeout_s: float,
        metrics: Metrics | None = None,
        limits: Limits | None = None,
        max_queued_rows: int | None = None,
    ) -> None:
        self.registry = registry
        self._pool = tokenize_pool
        self._timeout_s = request_timeout_s
        self._metrics = metrics
        self._limits = limits or Limits()
        self._max_rows = max_queued_rows
        self.inline = InlineWork()

    async def classify(
        self, model: str | None, inputs: Sequence[TextInput], params: ClassifyParams, deadline: float | None = None
    ) -> ServiceResult[LabelScore]:
        result: ServiceResult[LabelScore] = await self._run("sequence-classification", model, inputs, params, deadline)
        return result

    async def tag_tokens(
        self, model: str | None, inputs: Sequence[TextInput], params: TokenClassifyParams, deadline: float | None = None
    ) -> ServiceResult[Entity]:
        result: ServiceResult[Entity] = await self._run("token-classification", model, inputs, params, deadline)
        return result

    async def answer(
        self, model: str | None, inputs: Sequence[QAInput], params: AnswerParams, deadline: float | None = None
    ) -> ServiceResult[Answer]:
        result: ServiceResult[Answer] = await self._run("question-answering", model, inputs, params, deadline)
        return result

    def deadline_from(self, timeout_s: float | None) -> float:
        """Absolute deadline: the caller's timeout, capped by the server's request timeout."""
        limit = self._timeout_s if timeout_s is None else min(timeout_s, self._timeout_s)
        return time.monotonic() + limit

    async def _run(
        self, task: str, model: str | None, inputs: Sequence[Any], params: Any, deadline: float | None
    ) -> Any:
        return await self.run(self.registry.resolve(model, task), inputs, params, deadline)

    async def run(self, handle: ModelHandle, inputs: Sequence[Any], params: Any, deadline: float | None) -> Any:
        """Serve one request on an already resolved model."""
        started = time.monotonic()
        deadline = self.deadline_from(None) if deadline is None else deadline
        check_count(inputs, self._limits)
        self._check_queueable(len(inputs), "inputs")
        # Refused here if the queue is full, before paying for tokenization; while the rows are
        # being prepared, a partial batch of this model may wait for them.
        with handle.batcher.expecting(max(1, len(inputs))):
            prepared = await self._work(
                (handle.name, "preprocess"), text_chars(inputs), handle.handler.preprocess, inputs, params
            )
        self._check_queueable(len(prepared.rows), "model rows (after windowing)")
        tokenized = time.monotonic()
        if self._metrics is not None:
            self._metrics.child(self._metrics.tokenize_duration, handle.name).observe(tokenized - started)
        rows = await self._infer(handle, prepared, deadline)
        inferred = time.monotonic()
        outputs = [row.outputs for row in rows]
        tokens = sum(row.length for row in prepared.rows)
        results = await self._work(
            (handle.name, "postprocess"), tokens, handle.handler.postprocess, prepared, outputs, params
        )
        done = time.monotonic()
        tracing.record_stages(handle.name, handle.task, started, tokenized, inferred, done, rows)
        queue_s = max(row.queue_s for row in rows)
        inference_s = max(row.run_s for row in rows)
        timings = Timings(tokenized - started, queue_s, inference_s, done - inferred, done - started)
        return ServiceResult(handle.name, results, timings)

    def _check_queueable(self, count: int, what: str) -> None:
        """A request that could never be queued is the client's error (422), not overload (429)."""
        if self._max_rows is not None and count > self._max_rows:
            raise InvalidInput(f"the request makes {count} {what}; a model queues at most {self._max_rows}")

    async def _work(self, key: tuple[str, str], units: int | None, fn: Any, *args: Any) -> Any:
        """fn(*args) on the loop if it is predicted small, else in the pool; its time is learned."""

        def timed() -> Any:
            began = time.perf_counter()
            result = fn(*args)
            self.inline.observe(key, units, time.perf_counter() - began)
            return result

        try:
            if self.inline.inline(key, units):
                return timed()
            return await asyncio.get_running_loop().run_in_executor(self._pool, timed)
        except ServiceError:
            raise
        except Exception as exc:  # a bug in pre/post-processing must not leak as a bare 500 trace
            log.exception("task processing failed")
            raise RuntimeFailure(RuntimeFailure.public_message) from exc

    async def _infer(self, handle: ModelHandle, prepared: Prepared, deadline: float) -> list[RowResult]:
        if not prepared.rows:
            raise InvalidInput("nothing to run: the inputs produced no model rows")
        try:
            futures = handle.batcher.submit(prepared.rows, deadline)
        except ValueError as exc:  # malformed rows are a task bug, not the client's fault
            log.exception("task produced rows the batcher refused")
            raise RuntimeFailure(RuntimeFailure.public_message) from exc
        remaining = max(deadline - time.monotonic(), 0.0)
        try:
            if len(futures) == 1:  # most requests: awaited directly, the task resumes a loop turn sooner
                try:
                    async with asyncio.timeout(remaining):
                        return [await futures[0]]
                except TimeoutError:
                    raise DeadlineExceeded(_LATE) from None
            # asyncio.wait, not wait_for(gather(...)): a cancelled gather leaves an exception
            # nobody retrieves, and wait lets us cancel exactly the rows still pending.
            done, pending = await asyncio.wait(futures, timeout=remaining, return_when=asyncio.FIRST_EXCEPTION)
            for future in futures:
                error = future.exception() if future in done and not future.cancelled() else None
                if error is not None:
                    raise error
            if pending:
                raise DeadlineExceeded(_LATE)
            return [f.result() for f in futures]
        finally:
            for future in futures:  # caller gone, deadline hit or a sibling row failed: drop the rest
                if not future.done():
                    future.cancel()
                elif not future.cancelled():
                    future.exception()  # retrieved: siblings' errors are not logged as "never retrieved"
