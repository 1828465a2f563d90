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
        settings = _settings(store, **overrides)
        registry = ModelRegistry(settings)
        await registry.load()
        pool = ThreadPoolExecutor(2)
        try:
            service = InferenceService(registry, pool, 30, None, settings.limits(), settings.max_queued_rows)
            return await body(service)
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
        assert ner.trained is False and ner.ready and ner.state == "ready"
        assert not service.registry.loading

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
        handle = service.registry.resolve(None, "sequence-classification")
        # Another request's 8 rows are being tokenized: the queue is full.
        with handle.batcher.expecting(8), pytest.raises(Overloaded) as info:
            await service.classify(None, many[:1], ClassifyParams())
        assert info.value.retry_after_s > 0
        ok = await service.classify(None, many[:4], ClassifyParams())
        assert len(ok.results) == 4

    _run(store, body, max_queued_rows=8)


def test_more_inputs_than_the_queue_holds_is_invalid_not_overloaded(store: Path) -> None:
    """Waiting could never help, so Retry-After would make a client retry for ever (issue 13, #2)."""

    async def body(service: InferenceService) -> None:
        with pytest.raises(InvalidInput, match="queues at most 8"):
            await service.classify(None, [TextInput(f"t{i}") for i in range(9)], ClassifyParams())
        with pytest.raises(InvalidInput, match="too many inputs"):
            await service.classify(None, [TextInput(f"t{i}") for i in range(65)], ClassifyParams())

    _run(store, body, max_queued_rows=8)


def test_broken_entries_fail_alone_and_are_listed_with_their_reasons(
    tmp_path: Path, store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A corrupt manifest and a warm-up failure each fail their own entry; the others are served.

    The warm-up failure is real: the manifest claims 4096 positions, the graph has 512, so ORT's
    Gather fails on the warm-up's longest row while the one-row load check still passes.
    """
    for name in ("sequence-classification", "question-answering"):
        shutil.copytree(store / name, tmp_path / name)
    shutil.copytree(store / "token-classification", tmp_path / "a-warmup-fails")
    manifest = tmp_path / "question-answering" / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "task": "summarization"}))
    warm = tmp_path / "a-warmup-fails" / "manifest.json"
    warm.write_text(json.dumps({**json.loads(warm.read_text()), "name": "a-warmup-fails", "max_seq_len": 4096}))

    async def body(service: InferenceService) -> None:
        statuses = {s.name: s for s in service.registry.statuses()}
        assert {n: s.state for n, s in statuses.items()} == {
            "a-warmup-fails": "failed",
            "question-answering": "failed",
            "sequence-classification": "ready",
        }
        assert "summarization" in statuses["question-answering"].reason
        assert statuses["a-warmup-fails"].task == "token-classification" and statuses["a-warmup-fails"].reason
        assert not service.registry.loading
        ok = await service.classify(None, [TextInput("still served")], ClassifyParams())
        assert ok.model == "sequence-classification"
        with pytest.raises(ModelNotFound):
            await service.answer(None, [QAInput("q", "c")], AnswerParams())
        with pytest.raises(NotReady, match="failed to load"):
            await service.tag_tokens("a-warmup-fails", [TextInput("x")], TokenClassifyParams())

    with caplog.at_level(logging.ERROR, logger="service.registry"):
        _run(tmp_path, body)
    lines = [r.getMessage() for r in caplog.records if r.name == "service.registry" and "not served" in r.getMessage()]
    assert len(lines) == 2 and "summarization" in lines[1]


def test_not_ready_while_loading(store: Path) -> None:
    registry = ModelRegistry(_settings(store))
    with pytest.raises(NotReady):
        registry.resolve(None, "sequence-classification")
    assert registry.loading


def test_a_full_queue_refuses_before_tokenizing(store: Path) -> None:
    async def body(service: InferenceService) -> None:
        handle = service.registry.resolve(None, "sequence-classification")
        calls: list[int] = []
        original = handle.handler.preprocess

        def counting(inputs: Any, params: Any) -> Any:
            calls.append(len(inputs))
            return original(inputs, params)

        handle.handler.preprocess = counting  # type: ignore[method-assign]
        with handle.batcher.expecting(8), pytest.raises(Overloaded):
            await service.classify(None, [TextInput("no room")], ClassifyParams())
        assert calls == []  # refused with the queue full: no tokenizer time spent
        await service.classify(None, [TextInput("fits")], ClassifyParams())
        assert calls == [1]

    _run(store, body, max_queued_rows=8)
