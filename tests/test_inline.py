"""Small pre/post-processing runs on the event loop, large (or not yet measured) in the pool."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from service.config import Settings
from service.inline import InlineWork
from service.pipeline import InferenceService
from service.registry import ModelRegistry
from service.tasks.base import ClassifyParams, QAInput, TextInput, text_chars


def test_a_job_is_inlined_only_once_its_kind_is_measured_and_predicted_within_budget() -> None:
    work = InlineWork(budget_s=0.001)
    assert not work.inline("k", 1)  # never seen: the pool
    work.observe("k", 100, 0.0001)  # 1 us per unit
    assert work.inline("k", 1000) and not work.inline("k", 1001)
    assert not work.inline("other", 1)  # learned per key
    for _ in range(30):  # the machine or the traffic got slower: the average follows
        work.observe("k", 100, 0.001)
    assert not work.inline("k", 200) and work.inline("k", 90)


def test_text_chars_counts_every_text_an_input_carries() -> None:
    assert text_chars([TextInput("abc"), TextInput("de", "fgh")]) == 8
    assert text_chars([QAInput("why?", "because")]) == 11
    assert text_chars([TextInput("abc"), object()]) is None  # unknown cost: never inlined
    work = InlineWork(budget_s=1.0)
    work.observe("k", 1, 1e-9)
    assert work.inline("k", 10**6) and not work.inline("k", None)


def _where(service: InferenceService, name: str) -> dict[str, list[str]]:
    """Wraps the model's real handler so that each call notes the thread it ran on."""
    handle = service.registry.resolve(name, "sequence-classification")
    seen: dict[str, list[str]] = {"preprocess": [], "postprocess": []}

    def spy(phase: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            seen[phase].append(threading.current_thread().name)
            return real(*args)

        return call

    for phase in seen:
        setattr(handle.handler, phase, spy(phase, getattr(handle.handler, phase)))
    return seen


def test_small_requests_are_processed_on_the_loop_and_large_ones_in_the_pool(store: Path) -> None:
    async def main() -> dict[str, list[str]]:
        settings = Settings(store_dir=store, session_instances=1, intra_op_threads=1)
        registry = ModelRegistry(settings)
        await registry.load()
        pool = ThreadPoolExecutor(1, thread_name_prefix="tokenize")
        try:
            service = InferenceService(registry, pool, 30, None, settings.limits(), settings.max_queued_rows)
            # A first job carries one-off costs (a CI run right after the image build measured it
            # above 0.5 ms); 2 ms keeps "small" small on a busy machine, and 8,000 characters large.
            service.inline.budget_s = 0.002
            seen = _where(service, "sequence-classification")
            small = [TextInput("a short text")]
            for _ in range(3):  # the first is measured in the pool, the rest are predicted small
                await service.classify("sequence-classification", small, ClassifyParams())
            large = [TextInput("word " * 200) for _ in range(8)]  # 8,000 characters, ~3,200 row tokens
            await service.classify("sequence-classification", large, ClassifyParams())
            return seen
        finally:
            await registry.stop()
            pool.shutdown()

    seen = asyncio.run(main())
    loop_thread = threading.main_thread().name
    for phase in ("preprocess", "postprocess"):
        first, second, third, large = seen[phase]
        assert first.startswith("tokenize"), (phase, seen)
        assert second == third == loop_thread, (phase, seen)
        assert large.startswith("tokenize"), (phase, seen)
