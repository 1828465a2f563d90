"""DynamicBatcher with real int8 ORT sessions, and how batches are formed."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from service.batching.batcher import DynamicBatcher
from service.batching.padding import BatchOutputError, pad_rows, split_outputs
from service.batching.queue import BatchCost, PendingRow, RowQueue
from service.batching.rows import EncodedRow, RowOutput
from service.batching.throughput import ThroughputEstimator
from service.batching.types import BatcherConfig, BatchSpec
from service.errors import Overloaded
from tests.batcher_support import (
    FAKE_SPEC,
    FAR,
    PACKED_FAKE_SPEC,
    FakeRunner,
    OrtRunner,
    PackedFakeRunner,
    RecordingObserver,
    check_fake_output,
    encode,
    fake_row,
    gather_all,
    run,
    running,
    spec_for,
    wait_until,
)


def test_concurrent_callers_each_get_their_own_result(store: Path, tokenizer: Tokenizer) -> None:
    runners = [OrtRunner(store / "sequence-classification" / "model.onnx") for _ in range(2)]
    rng = random.Random(0)
    rows = [encode(tokenizer, rng.randint(3, 120), offset=i) for i in range(40)]
    observer = RecordingObserver()
    config = BatcherConfig(max_batch_size=8, max_batch_delay_ms=5)

    async def scenario() -> list[Any]:
        async with running(
            DynamicBatcher(runners, spec_for(tokenizer, False, runners[0]), config, observer)
        ) as batcher:

            async def call(row: EncodedRow) -> RowOutput:
                await asyncio.sleep(rng.random() * 0.01)
                (future,) = batcher.submit([row], deadline=time.monotonic() + 10)
                result = await asyncio.wait_for(future, 10)
                assert result.queue_s >= 0 and result.run_s > 0
                return result.outputs

            return await asyncio.gather(*(call(row) for row in rows))

    results = run(scenario())
    for row, result in zip(rows, results):
        np.testing.assert_allclose(result[0], runners[0].alone(row)[0], atol=1e-5)
    assert max(b[0] for b in observer.batches) > 1
    assert sum(b[0] for b in observer.batches) == 40 == sum(shape[0] for r in runners for shape in r.shapes)


def test_neighbours_do_not_change_token_level_results(store: Path, tokenizer: Tokenizer) -> None:
    runner = OrtRunner(store / "token-classification" / "model.onnx")
    target = encode(tokenizer, 17, offset=3)
    neighbour_sets = [
        [],
        [encode(tokenizer, 3, 1), encode(tokenizer, 5, 2)],
        [encode(tokenizer, n, n) for n in (60, 120)],
    ]
    observer = RecordingObserver()
    # No padding floor: this test wants heavily padded mixed batches to prove they change nothing.
    config = BatcherConfig(max_batch_size=8, max_batch_delay_ms=50, min_padding_efficiency=0.0)

    async def scenario() -> list[list[RowOutput]]:
        async with running(DynamicBatcher([runner], spec_for(tokenizer, True, runner), config, observer)) as batcher:
            outcomes = []
            for neighbours in neighbour_sets:
                outcomes.append(await gather_all(batcher.submit([*neighbours, target], FAR)))
            return outcomes

    outcomes = run(scenario())
    assert [b[0] for b in observer.batches] == [1, 3, 3]  # the compositions really differed
    assert runner.shapes == [(1, 17), (3, 17), (3, 120)]
    reference = runner.alone(target)[0]
    for outcome, neighbours in zip(outcomes, neighbour_sets):
        assert outcome[-1][0].shape == reference.shape == (17, reference.shape[1])
        np.testing.assert_allclose(outcome[-1][0], reference, atol=1e-5)
        for row, output in zip(neighbours, outcome):
            assert output[0].shape[0] == row.length


def padding_efficiency(runner: OrtRunner, tokenizer: Tokenizer, group_by_length: bool) -> RecordingObserver:
    rows = [encode(tokenizer, 4 if i % 2 == 0 else 64, i) for i in range(16)]  # short, long, short, ...
    observer = RecordingObserver()
    config = BatcherConfig(max_batch_size=4, max_batch_delay_ms=0, group_by_length=group_by_length)

    async def scenario() -> None:
        async with running(DynamicBatcher([runner], spec_for(tokenizer, False, runner), config, observer)) as batcher:
            results = await gather_all(batcher.submit(rows, FAR))  # queued at once, before any dispatch
            assert all(isinstance(r, list) for r in results)

    run(scenario())
    return observer


def test_length_grouping_beats_fifo_padding(store: Path, tokenizer: Tokenizer) -> None:
    runner = OrtRunner(store / "sequence-classification" / "model.onnx")
    fifo = padding_efficiency(runner, tokenizer, group_by_length=False)
    grouped = padding_efficiency(runner, tokenizer, group_by_length=True)
    assert fifo.efficiency() < 0.6
    assert grouped.efficiency() == 1.0  # every batch is all-short or all-long
    assert sum(b[0] for b in grouped.batches) == sum(b[0] for b in fifo.batches) == 16


def test_fixed_delay_bounds_the_wait_and_a_full_batch_goes_at_once() -> None:
    runner, observer = FakeRunner(), RecordingObserver()
    config = BatcherConfig(max_batch_size=4, max_batch_delay_ms=150, adaptive_delay=False)

    async def scenario() -> None:
        async with running(DynamicBatcher([runner], FAKE_SPEC, config, observer)) as batcher:
            await gather_all(batcher.submit([fake_row(1, 5)], FAR))  # alone: waits for the delay
            await gather_all(batcher.submit([fake_row(i, 5) for i in range(2, 6)], FAR))  # full

    run(scenario())
    assert [b[0] for b in observer.batches] == [1, 4]
    assert observer.waits[0][0] >= 0.14
    assert max(observer.waits[1]) < 0.1


def test_adaptive_delay_sends_a_lone_row_at_once() -> None:
    runner, observer = FakeRunner(), RecordingObserver()
    config = BatcherConfig(max_batch_size=4, max_batch_delay_ms=2000)  # adaptive by default

    async def scenario() -> None:
        async with running(DynamicBatcher([runner], FAKE_SPEC, config, observer)) as batcher:
            await gather_all(batcher.submit([fake_row(1, 5)], FAR), timeout_s=1.0)  # nobody else is coming

    run(scenario())
    assert [b[0] for b in observer.batches] == [1]
    assert observer.waits[0][0] < 0.5


def test_adaptive_delay_waits_for_announced_rows_but_not_beyond_the_delay() -> None:
    runner, observer = FakeRunner(), RecordingObserver()
    config = BatcherConfig(max_batch_size=4, max_batch_delay_ms=300)

    async def scenario() -> None:
        async with running(DynamicBatcher([runner], FAKE_SPEC, config, observer)) as batcher:
            # Two requests: the second is still "being tokenized" when the first is queued.
            with batcher.expecting(1):
                first = batcher.submit([fake_row(1, 5)], FAR)
                await asyncio.sleep(0.05)
                assert not runner.calls  # held back: a companion was announced
            second = batcher.submit([fake_row(2, 5)], FAR)
            await gather_all(first + second)
            # An announced request that takes too long: the partial batch goes after the delay.
            with batcher.expecting(1):
                third = batcher.submit([fake_row(3, 5)], FAR)
                await gather_all(third, timeout_s=2.0)

    run(scenario())
    assert [b[0] for b in observer.batches] == [2, 1]
    assert 0.04 <= observer.waits[0][0] < 0.29  # went when the companion arrived, not at the delay
    assert 0.29 <= observer.waits[1][0] < 1.5


def test_announced_rows_count_against_the_queue_limit() -> None:
    config = BatcherConfig(max_queued_rows=3)

    async def scenario() -> None:
        async with running(DynamicBatcher([FakeRunner()], FAKE_SPEC, config)) as batcher:
            with batcher.expecting(2):
                with pytest.raises(Overloaded), batcher.expecting(2):
                    pass
                with batcher.expecting(1):
                    pass
            with batcher.expecting(3):  # released: room again
                pass

    run(scenario())


def test_batch_size_and_token_budget_are_respected() -> None:
    runner = FakeRunner()
    rng = random.Random(1)
    rows = [fake_row(1000 + i, rng.choice([2, 5, 9, 16, 30, 100])) for i in range(60)]
    config = BatcherConfig(max_batch_size=4, max_batch_tokens=64, max_batch_delay_ms=1)

    async def scenario() -> list[Any]:
        async with running(DynamicBatcher([runner], FAKE_SPEC, config)) as batcher:
            return await gather_all(batcher.submit(rows, FAR))

    results = run(scenario())
    for row, result in zip(rows, results):
        check_fake_output(result, row)
    for ids in runner.calls:
        assert ids.shape[0] <= 4
        assert ids.shape[0] * ids.shape[1] <= 64 or ids.shape[0] == 1
    assert any(ids.shape == (1, 100) for ids in runner.calls)  # over the budget: runs alone
    assert sorted(runner.markers_seen()) == list(range(1000, 1060))


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 80), min_size=1, max_size=40),
    max_size=st.integers(1, 8),
    max_tokens=st.integers(1, 256),
    grouped=st.booleans(),
    min_efficiency=st.sampled_from([0.0, 0.5, 0.8, 1.0]),
)
def test_selection_invariants(
    lengths: list[int], max_size: int, max_tokens: int, grouped: bool, min_efficiency: float
) -> None:
    loop = asyncio.new_event_loop()
    try:
        queue = RowQueue()
        queue.add(PendingRow(i, fake_row(i, n), loop.create_future(), FAR, 0.0) for i, n in enumerate(lengths))
        config = BatcherConfig(
            max_batch_size=max_size,
            max_batch_tokens=max_tokens,
            group_by_length=grouped,
            min_padding_efficiency=min_efficiency,
        )
        selection = queue.select(config)
    finally:
        loop.close()
    assert selection is not None
    chosen = [p.seq for p in selection.rows]
    longest = max(p.length for p in selection.rows)
    assert chosen[0] == 0 and len(set(chosen)) == len(chosen) <= max_size
    assert len(chosen) == 1 or len(chosen) * longest <= max_tokens
    if not grouped:
        assert chosen == list(range(len(chosen)))
    elif len(chosen) > 1:  # grouped batches keep the padding floor
        real = sum(p.length for p in selection.rows)
        assert real >= min_efficiency * len(chosen) * longest - 1e-9
    assert selection.full == (len(chosen) == max_size or len(chosen) < len(lengths))


def test_padding_and_splitting() -> None:
    rows = [fake_row(5, 2), fake_row(6, 4)]
    feeds = pad_rows(rows, BatchSpec(pad_values={"input_ids": 9, "token_type_ids": 3}, token_level=(True,)))
    np.testing.assert_array_equal(feeds["input_ids"], [[5, 7, 9, 9], [6, 7, 7, 7]])
    np.testing.assert_array_equal(feeds["attention_mask"], [[1, 1, 0, 0], [1, 1, 1, 1]])
    np.testing.assert_array_equal(feeds["token_type_ids"], [[0, 0, 3, 3], [0, 0, 0, 0]])
    assert all(f.dtype == np.int64 for f in feeds.values())
    outputs = split_outputs([np.arange(8).reshape(2, 4)], rows, BatchSpec({}, (True,)))
    assert [o[0].tolist() for o in outputs] == [[0, 1], [4, 5, 6, 7]]


def test_packed_feeds_hold_real_tokens_only_and_split_back_per_row() -> None:
    rows = [fake_row(5, 2), fake_row(6, 4)]
    spec = BatchSpec(pad_values={"input_ids": 9}, token_level=(False, True), layout="packed")
    feeds = pad_rows(rows, spec)
    np.testing.assert_array_equal(feeds["input_ids"], [5, 7, 6, 7, 7, 7])  # no pad id anywhere
    np.testing.assert_array_equal(feeds["token_type_ids"], [0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(feeds["attention_mask"], [[1, 1, 0, 0], [1, 1, 1, 1]])
    outputs = split_outputs([np.array([[1.0], [2.0]]), np.arange(6) * 10], rows, spec)
    assert [(o[0].tolist(), o[1].tolist()) for o in outputs] == [([1.0], [0, 10]), ([2.0], [20, 30, 40, 50])]
    with pytest.raises(BatchOutputError):  # a per-token output must have one entry per real token
        split_outputs([np.array([[1.0], [2.0]]), np.arange(8)], rows, spec)


def _select(lengths: list[int], cost: BatchCost, **config: Any) -> list[int]:
    loop = asyncio.new_event_loop()
    try:
        queue = RowQueue()
        queue.add(PendingRow(i, fake_row(i, n), loop.create_future(), FAR, 0.0) for i, n in enumerate(lengths))
        selection = queue.select(BatcherConfig(**{"max_batch_size": 8, "min_padding_efficiency": 0.8, **config}), cost)
    finally:
        loop.close()
    assert selection is not None
    return [p.length for p in selection.rows]


def test_selection_follows_the_documented_cost_model() -> None:
    """Efficiency = useful / paid cost (docs/ARCHITECTURE.md), worked by hand. Packed, attention
    weight 0.05, rows of 10 and 6 tokens: useful 16 + 0.05 x (100 + 36) = 22.8, paid 16 + 0.05 x 2 x
    10 x 10 = 26, so 0.877; a third row of 6: useful 22 + 0.05 x 172 = 30.6, paid 22 + 0.05 x 300 =
    37, so 0.827."""
    cost = BatchCost(packed=True, attention=0.05)
    assert _select([10, 6, 6], cost, min_padding_efficiency=0.9) == [10]
    assert _select([10, 6, 6], cost, min_padding_efficiency=0.87) == [10, 6]
    assert _select([10, 6, 6], cost, min_padding_efficiency=0.8) == [10, 6, 6]
    assert BatchCost(packed=True, attention=0.05).efficiency(2, 10, 16, 136) == pytest.approx(22.8 / 26)
    # Padded, attention not weighed: 18 real of 20 paid is exactly the floor, which is enough.
    assert _select([10, 8], BatchCost(), min_padding_efficiency=0.9) == [10, 8]
    assert _select([8, 8, 8], BatchCost(), max_batch_tokens=16) == [8, 8]  # 2 x 8 places: exactly the budget
    # The closest lengths first: 48 joins 50 before 10 does.
    assert _select([50, 10, 48], BatchCost(), max_batch_size=2, min_padding_efficiency=0.0) == [50, 48]


def test_packed_batches_take_mixed_lengths_that_padded_ones_must_split() -> None:
    """Packed, padding costs only attention: a long row and short ones share a batch."""
    lengths = [100, 12, 10, 90, 8]
    assert _select(lengths, BatchCost(packed=False)) == [100, 90]  # padded: (100+90)/(2x100) >= 0.8 only
    assert sorted(_select(lengths, BatchCost(packed=True, attention=0.001))) == [8, 10, 12, 90, 100]
    # ... unless the attention view's padding outweighs it: 8 short rows beside one of 512 tokens.
    assert _select([512, *[8] * 7], BatchCost(packed=True, attention=0.001)) == [512]


def test_retry_after_follows_measured_throughput() -> None:
    estimator = ThroughputEstimator(runners=2)
    assert estimator.retry_after_s(100) == 1.0  # no measurement yet
    estimator.record(rows=0, run_s=0.1)
    estimator.record(rows=5, run_s=0.0)
    assert estimator.rows_per_s is None  # nothing measurable
    estimator.record(rows=1, run_s=0.01)  # 100 rows/s per runner, 200 with two
    assert estimator.retry_after_s(100) == pytest.approx(0.5)
    assert estimator.retry_after_s(1) == 0.05 and estimator.retry_after_s(10**6) == 30.0
    estimator.record(rows=20, run_s=0.1)  # 200 rows/s: the average moves a fifth of the way
    assert estimator.rows_per_s == pytest.approx(2 * 120.0)


def test_a_packed_batcher_batches_mixed_lengths_that_a_padded_one_splits() -> None:
    """The batcher weighs padding by its graph's layout (BatchSpec.layout, attention_cost)."""
    lengths = [100, 12, 10, 90, 8]
    config = BatcherConfig(max_batch_size=8, max_batch_delay_ms=0, min_padding_efficiency=0.8)
    rows = [fake_row(i + 1, n) for i, n in enumerate(lengths)]
    packed, padded = PackedFakeRunner(), FakeRunner()

    async def scenario(runner: Any, spec: BatchSpec) -> list[Any]:
        async with running(DynamicBatcher([runner], spec, config)) as batcher:
            return await gather_all(batcher.submit(rows, FAR))

    for row, output in zip(rows, run(scenario(packed, PACKED_FAKE_SPEC))):
        check_fake_output(output, row)
    assert packed.batch_rows == [5]
    run(scenario(padded, FAKE_SPEC))
    assert [len(ids) for ids in padded.calls] == [2, 3]  # 100 with 90, then the short ones
    # ... and by the attention view's padding (BatchSpec.attention_cost): 7 short rows beside one of
    # 512 tokens would pay mostly for pad places in attention.
    rows = [fake_row(1, 512)] + [fake_row(i, 8) for i in range(2, 9)]
    config = BatcherConfig(max_batch_size=8, max_batch_tokens=8192, max_batch_delay_ms=0)
    packed = PackedFakeRunner()
    run(scenario(packed, PACKED_FAKE_SPEC))
    assert packed.batch_rows == [1, 7]


def test_after_a_batch_of_several_rows_a_lone_row_waits_for_company() -> None:
    """Adaptive delay sends a row at once only while requests come one at a time."""
    runner, observer = FakeRunner(), RecordingObserver()
    config = BatcherConfig(max_batch_size=2, max_batch_delay_ms=2000)

    async def scenario() -> None:
        async with running(DynamicBatcher([runner], FAKE_SPEC, config, observer)) as batcher:
            await gather_all(batcher.submit([fake_row(1, 5), fake_row(2, 5)], FAR))  # full: goes at once
            first = batcher.submit([fake_row(3, 5)], FAR)
            await asyncio.sleep(0.05)
            await gather_all(first + batcher.submit([fake_row(4, 5)], FAR))

    run(scenario())
    assert [b[0] for b in observer.batches] == [2, 2]


def test_a_returning_batch_frees_its_runner_for_the_next_batch_before_its_callers_resume() -> None:
    """The order when a run ends: the waiting batch is handed to the freed runner, then the callers
    resume, and the batch's metrics are recorded after them (none of it delays a caller)."""
    gate = threading.Event()
    runner, observer = FakeRunner(gate=gate), RecordingObserver()
    config = BatcherConfig(max_batch_size=1, max_batch_delay_ms=0)

    async def scenario() -> tuple[int, int]:
        async with running(DynamicBatcher([runner], FAKE_SPEC, config, observer)) as batcher:
            first = batcher.submit([fake_row(1, 5)], FAR)
            await wait_until(runner.started.is_set)
            second = batcher.submit([fake_row(2, 5)], FAR)
            gate.set()
            await first[0]  # as the service awaits a one-row request
            seen = batcher.queued_rows, len(observer.batches)  # as the first caller resumes
            await gather_all(second)
            return seen

    assert run(scenario()) == (0, 0)
    assert runner.markers_seen() == [1, 2]
    assert [b[0] for b in observer.batches] == [1, 1]
