"""InferenceService over the real registry: tiny int8 models, real tokenizer, ORT and batcher."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from service.config import Settings
from service.errors import DeadlineExceeded, InvalidInput, ModelNotFound, NotReady, Overloaded, WrongTask
from service.pipeline import InferenceService
from service.registry import ModelRegistry
from service.runtime.ort_runtime import OrtRuntime
from service.tasks.base import AnswerParams, ClassifyParams, QAInput, TextInput, TokenClassifyParams

T = TypeVar("T")


def _settings(store: Path, **overrides: Any) -> Settings:
    return Settings(store_dir=store, session_instances=1, intra_op_threads=1, **overrides)


def _run(store: Path, body: Callable[[InferenceService], Awaitable[T]], **overrides: Any) -> T:
    async def main() -> T:
        registry = ModelRegistry(_settings(store, **overrides))
        await registry.load()
        pool = ThreadPoolExecutor(2)
        try:
            return await body(InferenceService(registry, pool, request_timeout_s=30))
        finally:
            await registry.stop()
            pool.shutdown()

    return asyncio.run(main())


def test_registry_loads_every_model_and_reports_status(store: Path) -> None:
    async def body(service: InferenceService) -> None:
        statuses = {s.name: s for s in service.registry.statuses()}
        assert set(statuses) == {"sequence-classification", "token-classification", "question-answering"}
        ner = statuses["token-classification"]
        assert ner.task == "token-classification" and ner.labels[0] == "O" and ner.max_seq_len == 512
        assert ner.trained is False and ner.ready
        assert service.registry.ready

    _run(store, body)


def test_the_three_tasks_answer_through_the_default_models(store: Path) -> None:
    async def body(service: InferenceService) -> None:
        cls = await service.classify(None, [TextInput("good film"), TextInput("a", "b")], ClassifyParams(top_k=None))
        assert cls.model == "sequence-classification" and len(cls.results) == 2
        assert {r.label for r in cls.results[0]} == {"NEGATIVE", "POSITIVE"}
        assert abs(sum(r.score for r in cls.results[0]) - 1.0) < 1e-5
        ner = await service.tag_tokens(None, [TextInput("Ada Lovelace lived in London")], TokenClassifyParams())
        assert all(e.entity and e.index is not None for e in ner.results[0])
        context = "The treaty was signed in Vienna in 1815 by eleven countries."
        qa = await service.answer(None, [QAInput("Where was it signed?", context)], AnswerParams(top_k=2))
        assert len(qa.results[0]) == 2
        for a in qa.results[0]:
            assert context[a.start : a.end] == a.answer
        assert cls.timings.total_s >= cls.timings.tokenize_s > 0

    _run(store, body)


def test_same_input_same_answer_alone_or_among_concurrent_requests(store: Path) -> None:
    texts = [f"sentence number {i} " + "word " * (i * 7 % 50) for i in range(24)]

    async def body(service: InferenceService) -> tuple[list[Any], list[Any]]:
        alone = [(await service.classify(None, [TextInput(t)], ClassifyParams(top_k=None))).results[0] for t in texts]
        together = await asyncio.gather(
            *(service.classify(None, [TextInput(t)], ClassifyParams(top_k=None)) for t in texts)
        )
        return alone, [r.results[0] for r in together]

    alone, together = _run(store, body, max_batch_delay_ms=5.0)
    for a, b in zip(alone, together):
        assert [x.label for x in a] == [x.label for x in b]
        assert all(abs(x.score - y.score) <= 1e-5 for x, y in zip(a, b))


def test_adaptive_delay_no_wait_alone_and_one_batch_for_requests_tokenized_together(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[int] = []
    original = OrtRuntime.run

    def recording_run(self: OrtRuntime, feeds: Any) -> Any:
        batches.append(int(feeds["attention_mask"].shape[0]))  # rows, in either layout
        return original(self, feeds)

    async def body(service: InferenceService) -> tuple[float, float]:
        monkeypatch.setattr(OrtRuntime, "run", recording_run)
        started = time.monotonic()
        alone = await service.classify(None, [TextInput("nobody else is asking")], ClassifyParams())
        lone_s = time.monotonic() - started
        assert alone.timings.queue_s < 0.5  # not the 1 s delay: nothing else was on its way
        started = time.monotonic()
        # All eight are announced before any finishes tokenizing: the first waits for the rest.
        await asyncio.gather(*(service.classify(None, [TextInput(f"text {i}")], ClassifyParams()) for i in range(8)))
        return lone_s, time.monotonic() - started

    lone_s, together_s = _run(store, body, max_batch_delay_ms=1000.0, max_batch_size=32)
    assert batches == [1, 8]
    assert lone_s < 0.9 and together_s < 0.9


def test_error_kinds(store: Path) -> None:
    async def body(service: InferenceService) -> None:
        with pytest.raises(ModelNotFound):
            await service.classify("../../etc/passwd", [TextInput("x")], ClassifyParams())
        with pytest.raises(WrongTask):
            await service.classify("question-answering", [TextInput("x")], ClassifyParams())
        with pytest.raises(InvalidInput):
            await service.classify(None, [TextInput("")], ClassifyParams())
        with pytest.raises(DeadlineExceeded):
            await service.classify(None, [TextInput("late")], ClassifyParams(), deadline=time.monotonic() - 1)

    _run(store, body)


def test_overload_is_immediate_and_leaves_the_service_working(store: Path) -> None:
    async def body(service: InferenceService) -> None:
        many = [TextInput(f"text {i}") for i in range(10)]
        with pytest.raises(Overloaded) as info:
            await service.classify(None, many, ClassifyParams())
        assert info.value.retry_after_s > 0
        ok = await service.classify(None, many[:4], ClassifyParams())
        assert len(ok.results) == 4

    _run(store, body, max_queued_rows=8)


def test_a_broken_store_entry_is_skipped_with_one_log_line(
    tmp_path: Path, store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("sequence-classification", "question-answering"):
        shutil.copytree(store / name, tmp_path / name)
    manifest = tmp_path / "question-answering" / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "task": "summarization"}))

    async def body(service: InferenceService) -> None:
        assert [s.name for s in service.registry.statuses()] == ["sequence-classification"]
        with pytest.raises(ModelNotFound):
            await service.answer(None, [QAInput("q", "c")], AnswerParams())

    with caplog.at_level(logging.ERROR, logger="service.registry"):
        _run(tmp_path, body)
    lines = [r.getMessage() for r in caplog.records if r.name == "service.registry"]
    assert len(lines) == 1 and "question-answering" in lines[0] and "summarization" in lines[0]


def test_not_ready_while_loading(store: Path) -> None:
    registry = ModelRegistry(_settings(store))
    with pytest.raises(NotReady):
        registry.resolve(None, "sequence-classification")
    assert not registry.ready


def test_a_full_queue_refuses_before_tokenizing(store: Path) -> None:
    async def body(service: InferenceService) -> None:
        handle = service.registry.resolve(None, "sequence-classification")
        calls: list[int] = []
        original = handle.handler.preprocess

        def counting(inputs: Any, params: Any) -> Any:
            calls.append(len(inputs))
            return original(inputs, params)

        handle.handler.preprocess = counting  # type: ignore[method-assign]
        with pytest.raises(Overloaded):
            await service.classify(None, [TextInput(f"t{i}") for i in range(9)], ClassifyParams())
        assert calls == []  # 9 inputs can never fit 8 queue places: no tokenizer time spent
        await service.classify(None, [TextInput("fits")], ClassifyParams())
        assert calls == [1]

    _run(store, body, max_queued_rows=8)
