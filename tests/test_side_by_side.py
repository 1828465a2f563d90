"""Runs side by side: under load a model's batches run on a one-core session, two at once; a batch
that is all there is to run keeps the full session. Real int8 sessions throughout."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from service import registry as registry_module
from service.batching.batcher import DynamicBatcher
from service.batching.types import BatcherConfig
from service.config import Settings
from service.runtime.cpus import available_cpus
from tests.batcher_support import FAR, OrtRunner, encode, gather_all, run, running, spec_for, wait_until
from tests.harness import running_server, sample_value, settings_for

CLS = "sequence-classification"
LOAD_SECONDS = "squeezeserve_model_load_seconds"


class Recorded:
    """A real runner that records which runs were in flight together; `hold` keeps its first run
    going until `release` is set (so a test can see what the batcher does meanwhile)."""

    def __init__(self, runner: OrtRunner, name: str, log: list[tuple[str, int]], hold: bool = False) -> None:
        self.runner, self.name, self.log = runner, name, log
        self.in_flight: list[str] = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.hold = hold
        self.lock = threading.Lock()
        self.peak = 0  # most runs of this runner at once

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        with self.lock:
            self.in_flight.append(self.name)
            self.peak = max(self.peak, len(self.in_flight))
            self.log.append((self.name, int(feeds["attention_mask"].shape[0])))
            first = not self.started.is_set()
            self.started.set()
        try:
            if self.hold and first:
                assert self.release.wait(10), "the test never released the held run"
            return self.runner.run(feeds)
        finally:
            with self.lock:
                self.in_flight.remove(self.name)


def test_a_lone_batch_runs_wide_and_batches_under_load_run_side_by_side(store: Path, tokenizer: Tokenizer) -> None:
    graph = store / CLS / "model.onnx"
    log: list[tuple[str, int]] = []
    wide = Recorded(OrtRunner(graph, threads=2), "wide", log)
    narrow = Recorded(OrtRunner(graph, threads=1), "narrow", log, hold=True)
    rows = [encode(tokenizer, 8 + 3 * i, offset=i) for i in range(16)]
    config = BatcherConfig(max_batch_size=4, max_batch_delay_ms=0)

    async def scenario() -> tuple[list[object], list[object]]:
        async with running(DynamicBatcher([wide], spec_for(tokenizer, False, wide.runner), config)) as batcher:
            batcher.run_side_by_side(narrow, 2)
            lone = await gather_all(batcher.submit([rows[0]], FAR))
            assert log == [("wide", 1)]  # all there was to run: the full session
            futures = batcher.submit(rows, FAR)  # four batches' worth at once
            await wait_until(narrow.started.is_set)
            # The first batch is held in its run; a second one starts beside it, not after it.
            await wait_until(lambda: narrow.peak == 2)
            narrow.release.set()
            return lone, await gather_all(futures)

    lone, loaded = run(scenario())
    assert [name for name, _ in log[1:]] == ["narrow"] * 4 and narrow.peak == 2 and wide.peak == 1
    assert sorted(rows_in_batch for _, rows_in_batch in log[1:]) == [4, 4, 4, 4]
    # Same numbers whichever session ran the row, and whatever ran beside it.
    for row, outputs in zip([rows[0], *rows], [*lone, *loaded]):
        for got, alone in zip(outputs, wide.runner.alone(row)):
            np.testing.assert_array_equal(got, alone)


def test_runs_side_by_side_wait_for_a_wide_run_in_flight(store: Path, tokenizer: Tokenizer) -> None:
    """Switched on while the full session runs: nothing starts beside that run (it has every core)."""
    graph = store / CLS / "model.onnx"
    log: list[tuple[str, int]] = []
    wide = Recorded(OrtRunner(graph, threads=2), "wide", log, hold=True)
    narrow = Recorded(OrtRunner(graph, threads=1), "narrow", log)
    rows = [encode(tokenizer, 12, offset=i) for i in range(9)]
    config = BatcherConfig(max_batch_size=4, max_batch_delay_ms=0)

    async def scenario() -> tuple[int, int]:
        async with running(DynamicBatcher([wide], spec_for(tokenizer, False, wide.runner), config)) as batcher:
            first = batcher.submit(rows[:1], FAR)
            await wait_until(wide.started.is_set)
            batcher.run_side_by_side(narrow, 2)
            rest = batcher.submit(rows[1:], FAR)
            for _ in range(20):  # loop turns in which a wrong batcher would have launched
                await asyncio.sleep(0)
            waiting = batcher.queued_rows, len(log)
            wide.release.set()
            await gather_all(first + rest)
            return waiting

    assert run(scenario()) == (8, 1)
    assert [name for name, _ in log] == ["wide", "narrow", "narrow"]


def test_a_batch_goes_beside_a_request_still_being_tokenized(store: Path, tokenizer: Tokenizer) -> None:
    """Its rows will want a slot any moment: the batch takes one core, not the full session."""
    graph = store / CLS / "model.onnx"
    log: list[tuple[str, int]] = []
    wide = Recorded(OrtRunner(graph, threads=2), "wide", log)
    narrow = Recorded(OrtRunner(graph, threads=1), "narrow", log)
    config = BatcherConfig(max_batch_size=4, max_batch_delay_ms=0)

    async def scenario() -> None:
        async with running(DynamicBatcher([wide], spec_for(tokenizer, False, wide.runner), config)) as batcher:
            batcher.run_side_by_side(narrow, 2)
            with batcher.expecting(1):  # another request, being prepared
                await gather_all(batcher.submit([encode(tokenizer, 10)], FAR))

    run(scenario())
    assert log == [("narrow", 1)]


def test_side_by_side_needs_one_wide_runner_and_two_slots(store: Path) -> None:
    graph = store / CLS / "model.onnx"
    one, other = OrtRunner(graph), OrtRunner(graph)
    spec = spec_for(Tokenizer.from_file(str(store / CLS / "tokenizer.json")), False, one)
    with pytest.raises(RuntimeError, match="one wide runner"):
        DynamicBatcher([one, other], spec, BatcherConfig()).run_side_by_side(one, 2)
    with pytest.raises(RuntimeError, match=">= 2 slots"):
        DynamicBatcher([one], spec, BatcherConfig()).run_side_by_side(other, 1)
    batcher = DynamicBatcher([one], spec, BatcherConfig())
    batcher.run_side_by_side(other, 2)
    with pytest.raises(RuntimeError, match="one wide runner"):
        batcher.run_side_by_side(other, 2)  # once


@pytest.mark.parametrize(
    ("overrides", "slots"),
    [
        ({"intra_op_threads": 2}, 2),
        ({"intra_op_threads": 2, "side_by_side_runs": False}, 0),
        ({"intra_op_threads": 1}, 0),
        ({"intra_op_threads": 2, "session_instances": 2}, 0),
        ({"intra_op_threads": 2, "runs_per_session": 2}, 0),
        ({"intra_op_threads": 64}, available_cpus()),  # never more runs than cores
    ],
)
def test_side_by_side_slots(overrides: dict[str, object], slots: int) -> None:
    if available_cpus() < 2:
        pytest.skip("one CPU: nothing to run side by side")
    assert Settings(**overrides).side_by_side_slots() == slots


async def _finished(task: asyncio.Task[None]) -> None:
    await asyncio.wait_for(task, 60)


def test_the_server_adds_the_one_core_session_after_readiness(store: Path) -> None:
    if available_cpus() < 2:
        pytest.skip("one CPU: nothing to run side by side")
    with running_server(settings_for(store, intra_op_threads=2)) as server, server.client() as client:
        task = server.core.registry._side_by_side
        assert task is not None  # started when loading ended; readiness did not wait for it
        server.run(_finished(task))
        for model in (CLS, "token-classification", "question-answering"):
            assert server.metric(LOAD_SECONDS, model=model, phase="side_by_side") > 0, model
            handle = server.core.registry.find(model).handle
            assert handle is not None and handle.batcher.side_by_side_slots == 2
        texts = [f"text number {i}" for i in range(24)]
        assert client.post("/v1/classify", json={"model": CLS, "inputs": texts}).status_code == 200


def test_a_model_whose_one_core_session_fails_keeps_serving(
    store: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    if available_cpus() < 2:
        pytest.skip("one CPU: nothing to run side by side")

    def broken(*_: object) -> object:
        raise MemoryError("no room for a second session")

    monkeypatch.setattr(registry_module, "_open_one_core", broken)
    with running_server(settings_for(store, intra_op_threads=2)) as server, server.client() as client:
        task = server.core.registry._side_by_side
        assert task is not None
        server.run(_finished(task))
        metrics = client.get("/metrics").text
        assert 'phase="side_by_side"' not in metrics  # no model reports a one-core session
        handle = server.core.registry.find(CLS).handle
        assert handle is not None and handle.batcher.side_by_side_slots == 0
        assert sample_value(metrics, LOAD_SECONDS, model=CLS, phase="open") > 0
        response = client.post("/v1/classify", json={"model": CLS, "inputs": ["still served"] * 12})
        assert response.status_code == 200, response.text
    assert f"model {CLS}: batches will not run side by side: MemoryError: no room for a second session" in (
        caplog.messages
    )
