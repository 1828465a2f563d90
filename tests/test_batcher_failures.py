"""DynamicBatcher failure paths: deadlines, cancellation, overload, failing runs, shutdown."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from service.batching.batcher import ABANDON_WAIT_S, DynamicBatcher
from service.batching.rows import EncodedRow, RowResult
from service.batching.types import BatcherConfig
from service.errors import DeadlineExceeded, NotReady, Overloaded, RuntimeFailure
from tests.batcher_support import (
    FAKE_SPEC,
    FAR,
    FakeRunner,
    RecordingObserver,
    check_fake_output,
    fake_row,
    gather_all,
    run,
    running,
    wait_until,
)


def test_rows_expired_at_dispatch_never_reach_the_runner(gate: threading.Event) -> None:
    runner, observer = FakeRunner(gate), RecordingObserver()

    async def scenario() -> list[Any]:
        async with running(DynamicBatcher([runner], FAKE_SPEC, BatcherConfig(max_batch_delay_ms=0), observer)) as b:
            first = b.submit([fake_row(1, 3)], FAR)
            await wait_until(runner.started.is_set)  # the only runner is now busy
            soon = b.submit([fake_row(2, 3)], time.monotonic() + 0.03)
            past = b.submit([fake_row(3, 3)], time.monotonic() - 1)
            later = b.submit([fake_row(4, 3)], FAR)
            await asyncio.sleep(0.05)
            gate.set()
            return await gather_all(first + soon + past + later)

    results = run(scenario())
    assert isinstance(results[1], DeadlineExceeded) and isinstance(results[2], DeadlineExceeded)
    assert results[1].message == "deadline passed while queued"
    check_fake_output(results[0], fake_row(1, 3))
    check_fake_output(results[3], fake_row(4, 3))
    assert runner.markers_seen() == [1, 4]
    assert observer.dropped == {"expired": 2}


def test_cancelled_callers_never_reach_the_runner(gate: threading.Event) -> None:
    runner, observer = FakeRunner(gate), RecordingObserver()

    async def scenario() -> tuple[list[Any], Any]:
        async with running(DynamicBatcher([runner], FAKE_SPEC, BatcherConfig(max_batch_delay_ms=0), observer)) as b:
            first = b.submit([fake_row(1, 3), fake_row(6, 3), fake_row(5, 3)], FAR)
            await wait_until(runner.started.is_set)
            first[0].cancel()  # gone while their batch runs: their neighbour must still be answered
            first[1].cancel()
            caller = asyncio.ensure_future(asyncio.gather(*b.submit([fake_row(2, 3), fake_row(3, 3)], FAR)))
            kept = b.submit([fake_row(4, 3)], FAR)
            await asyncio.sleep(0)
            caller.cancel()  # the client went away: gather cancels the row futures
            gate.set()
            return await gather_all(first + kept), (await asyncio.gather(caller, return_exceptions=True))

    results, cancelled = run(scenario())
    assert isinstance(cancelled[0], asyncio.CancelledError) and isinstance(results[0], asyncio.CancelledError)
    check_fake_output(results[2], fake_row(5, 3))
    check_fake_output(results[3], fake_row(4, 3))
    assert runner.markers_seen() == [1, 6, 5, 4]
    assert observer.dropped == {"cancelled": 2}
    assert observer.discarded == {"cancelled": 2}  # rows 1 and 6 ran for nobody


def test_a_deadline_that_passes_while_the_batch_runs_is_answered_with_deadline_exceeded(
    gate: threading.Event,
) -> None:
    """The caller still waits, the outputs arrive, but after the row's deadline: DeadlineExceeded,
    never a late result; its batch neighbour (no deadline) gets its outputs; the row is counted."""
    DEADLINE_S = 1.0  # room for the worker thread to start the run on a busy machine (0.2 s was not)
    runner, observer = FakeRunner(gate), RecordingObserver()

    async def scenario() -> tuple[list[Any], RowResult]:
        async with running(DynamicBatcher([runner], FAKE_SPEC, BatcherConfig(max_batch_delay_ms=0), observer)) as b:
            deadline = time.monotonic() + DEADLINE_S
            futures = b.submit([fake_row(1, 3), fake_row(3, 3)], deadline) + b.submit([fake_row(2, 3)], FAR)
            await wait_until(runner.started.is_set)
            assert time.monotonic() < deadline, "the run must start before the deadline"
            await wait_until(lambda: time.monotonic() > deadline)  # the deadline passes during the run
            assert not futures[0].done()
            gate.set()
            results = await gather_all(futures)
            return results, futures[2].result()

    (late, late_too, kept), row = run(scenario())
    assert isinstance(late, DeadlineExceeded) and late.message == "the deadline passed while its batch ran"
    assert isinstance(late_too, DeadlineExceeded)
    check_fake_output(kept, fake_row(2, 3))
    assert runner.markers_seen() == [1, 3, 2]  # one batch: the rows left the queue in time
    assert observer.dropped == {} and observer.discarded == {"expired": 2}
    assert [b[0] for b in observer.batches] == [3]
    assert row.batch_rows == 3 and 0.0 <= row.queue_s < DEADLINE_S and row.run_s < 10.0
    assert row.queue_s + row.run_s >= 0.9 * DEADLINE_S  # the gate opened after the deadline
    assert observer.runs_s == [row.run_s]


def test_overload_is_immediate_and_the_bound_holds(gate: threading.Event) -> None:
    runner, observer = FakeRunner(gate), RecordingObserver()
    config = BatcherConfig(max_queued_rows=8, max_batch_delay_ms=0)

    async def scenario() -> list[Any]:
        async with running(DynamicBatcher([runner], FAKE_SPEC, config, observer)) as b:
            futures = b.submit([fake_row(0, 3)], FAR)
            await wait_until(runner.started.is_set)
            futures += b.submit([fake_row(i, 3) for i in range(1, 7)], FAR)
            with pytest.raises(Overloaded) as too_many:
                b.submit([fake_row(90, 3) for _ in range(3)], FAR)  # all-or-nothing: 6 + 3 > 8
            assert too_many.value.retry_after_s > 0 and b.queued_rows == 6
            futures += b.submit([fake_row(7, 3), fake_row(8, 3)], FAR)
            with pytest.raises(Overloaded) as one_more:
                b.submit([fake_row(91, 3)], FAR)
            assert 0.05 <= one_more.value.retry_after_s <= 30 and b.queued_rows == 8
            gate.set()
            return await gather_all(futures)

    results = run(scenario())
    assert all(isinstance(r, list) for r in results) and len(results) == 9
    assert max(observer.depths) == 8
    assert observer.depths[:2] == [1, 0]  # each change reported once, from the first
    assert all(a != b for a, b in zip(observer.depths, observer.depths[1:]))
    assert 90 not in runner.markers_seen() and 91 not in runner.markers_seen()


def test_overload_frees_places_held_by_dead_rows(gate: threading.Event) -> None:
    runner = FakeRunner(gate)

    async def scenario() -> None:
        config = BatcherConfig(max_queued_rows=2, max_batch_delay_ms=0)
        async with running(DynamicBatcher([runner], FAKE_SPEC, config)) as b:
            first = b.submit([fake_row(0, 3)], FAR)
            await wait_until(runner.started.is_set)
            dead = b.submit([fake_row(1, 3), fake_row(2, 3)], time.monotonic() + 0.01)
            await asyncio.sleep(0.02)
            alive = b.submit([fake_row(3, 3)], FAR)  # fits once the expired rows are dropped
            gate.set()
            results = await gather_all(first + dead + alive)
            assert [type(r) for r in results[1:3]] == [DeadlineExceeded] * 2 and isinstance(results[3], list)

    run(scenario())


@pytest.mark.parametrize("mode", ["raises", "wrong_count", "wrong_batch"])
def test_a_failing_run_fails_exactly_its_rows(mode: str, caplog: pytest.LogCaptureFixture) -> None:
    runner = FakeRunner(fail_marker=2 if mode == "raises" else None, mode="ok" if mode == "raises" else mode)
    config = BatcherConfig(max_batch_size=3, max_batch_delay_ms=0, group_by_length=False)
    rows = [fake_row(i, 3 + i) for i in range(6)]

    async def scenario() -> tuple[list[Any], list[Any]]:
        async with running(DynamicBatcher([runner], FAKE_SPEC, config, name="m")) as b:
            first = await gather_all(b.submit(rows, FAR))
            runner.mode, runner.fail_marker = "ok", None
            return first, await gather_all(b.submit(rows[:2], FAR))

    with caplog.at_level(logging.ERROR, logger="service.batching.batcher"):
        first, later = run(scenario())
    if mode == "raises":  # only the batch holding the marked row fails
        assert [isinstance(r, RuntimeFailure) for r in first] == [True] * 3 + [False] * 3
        for row, result in zip(rows[3:], first[3:]):
            check_fake_output(result, row)
    else:
        assert all(isinstance(r, RuntimeFailure) for r in first)
    assert all(r.message == RuntimeFailure.public_message for r in first if isinstance(r, RuntimeFailure))
    for row, result in zip(rows, later):
        check_fake_output(result, row)
    assert "model 'm': batch of 3 rows failed on the wide runner" in caplog.messages


def test_a_failing_observer_does_not_break_serving(gate: threading.Event, caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def __getattr__(self, hook: str) -> Any:
            def fail(*args: Any) -> None:
                raise RuntimeError("metrics bug")

            return fail

    runner = FakeRunner(gate)

    async def scenario() -> list[Any]:
        async with running(DynamicBatcher([runner], FAKE_SPEC, BatcherConfig(max_batch_delay_ms=0), Broken())) as b:
            futures = b.submit([fake_row(1, 4), fake_row(2, 4)], FAR)
            await wait_until(runner.started.is_set)
            futures[0].cancel()  # discarded once its batch ends
            futures += b.submit([fake_row(3, 4)], time.monotonic() - 1)  # dropped as expired
            futures += b.submit([fake_row(4, 4)], FAR)
            gate.set()
            return await gather_all(futures)

    with caplog.at_level(logging.ERROR, logger="service.batching.observer"):
        results = run(scenario())
    assert [type(r) for r in results] == [asyncio.CancelledError, list, DeadlineExceeded, list]
    hooks = ("on_queue_depth", "on_rows_dropped", "on_rows_discarded", "on_batch")
    assert {f"batcher observer failed in {hook}" for hook in hooks} == set(caplog.messages)


def test_drain_answers_everything_queued_and_rejects_new_rows(gate: threading.Event) -> None:
    runner = FakeRunner(gate)
    # A fixed delay (not adaptive): drain must not wait it out for the last, partial batch.
    config = BatcherConfig(max_batch_size=2, max_batch_delay_ms=5000, adaptive_delay=False)

    async def scenario() -> list[Any]:
        batcher = DynamicBatcher([runner], FAKE_SPEC, config)
        await batcher.start()
        futures = batcher.submit([fake_row(i, 3) for i in range(2)], FAR)
        await wait_until(runner.started.is_set)
        futures += batcher.submit([fake_row(i, 3) for i in range(2, 7)], FAR)
        stopping = asyncio.ensure_future(batcher.stop(drain=True, timeout_s=5))
        await asyncio.sleep(0.01)
        with pytest.raises(NotReady):
            batcher.submit([fake_row(9, 3)], FAR)
        gate.set()
        await asyncio.wait_for(stopping, 2)  # the last, partial batch does not wait out the delay
        assert batcher.queued_rows == 0
        return await gather_all(futures, timeout_s=0.1)  # already answered

    results = run(scenario())
    for i, result in enumerate(results):
        check_fake_output(result, fake_row(i, 3))
    assert sorted(runner.markers_seen()) == list(range(7))


def test_stop_without_drain_and_stop_timeout_answer_with_not_ready(
    gate: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    runner = FakeRunner(gate)

    async def scenario(drain: bool, timeout_s: float) -> list[Any]:
        batcher = DynamicBatcher([runner], FAKE_SPEC, BatcherConfig(max_batch_delay_ms=0), name="m")
        await batcher.start()
        futures = batcher.submit([fake_row(1, 3)], FAR)
        await wait_until(runner.started.is_set)
        futures += batcher.submit([fake_row(2, 3)], FAR)
        if drain:  # the in-flight run never finishes in time: stop gives up on it, bounded
            started = time.monotonic()
            await batcher.stop(drain=True, timeout_s=timeout_s)
            # timeout_s, then ABANDON_WAIT_S for the cancelled tasks; never the stuck worker thread.
            assert time.monotonic() - started < timeout_s + ABANDON_WAIT_S + 1.0
        else:
            stopping = asyncio.ensure_future(batcher.stop(drain=False, timeout_s=timeout_s))
            await asyncio.sleep(0.01)
            gate.set()
            await asyncio.wait_for(stopping, 5)
        return await gather_all(futures, timeout_s=0.1)

    with caplog.at_level(logging.WARNING, logger="service.batching.batcher"):
        not_drained = run(scenario(drain=False, timeout_s=5))
        assert not caplog.messages  # everything in flight finished: nothing abandoned
        gate.clear()
        runner.started.clear()
        timed_out = run(scenario(drain=True, timeout_s=0.1))
    assert isinstance(not_drained[0], list) and isinstance(not_drained[1], NotReady)
    assert not_drained[1].message == "model 'm' is shutting down"
    assert all(isinstance(r, NotReady) for r in timed_out)
    assert caplog.messages == ["model 'm': stop timed out with 1 batch(es) in flight"]
    gate.set()


def test_a_batcher_starts_once_and_refuses_rows_it_cannot_queue() -> None:
    with pytest.raises(ValueError, match="^a DynamicBatcher needs at least one runner$"):
        DynamicBatcher([], FAKE_SPEC, BatcherConfig())
    runner = FakeRunner()

    async def scenario() -> None:
        batcher = DynamicBatcher([runner], FAKE_SPEC, BatcherConfig(max_queued_rows=3, max_batch_delay_ms=0), name="m")
        with pytest.raises(NotReady, match="^model 'm' is not accepting requests$"):
            batcher.submit([fake_row(1, 3)], FAR)
        await batcher.start()
        with pytest.raises(RuntimeError, match="^batcher 'm' was already started$"):
            await batcher.start()
        for bad in (
            EncodedRow(np.ones(3, np.int64), np.ones(2, np.int64), np.zeros(3, np.int64)),  # lengths differ
            EncodedRow(np.ones((1, 3), np.int64), np.ones((1, 3), np.int64), np.zeros((1, 3), np.int64)),  # 2-D
            EncodedRow(np.ones(0, np.int64), np.ones(0, np.int64), np.zeros(0, np.int64)),  # empty
        ):
            with pytest.raises(ValueError, match="equal-length non-empty 1-D feeds, got \\[\\("):
                batcher.submit([bad], FAR)
        check_fake_output((await gather_all(batcher.submit([fake_row(5, 1)], FAR)))[0], fake_row(5, 1))
        await batcher.stop()
        with pytest.raises(RuntimeError, match="already started"):
            await batcher.start()  # not again after a stop

    run(scenario())
    assert set(runner.threads) == {"batcher-m_0"}  # the batcher's own worker thread, not the loop's pool


def test_the_queue_takes_exactly_its_limit_and_says_so_when_full(gate: threading.Event) -> None:
    runner = FakeRunner(gate)

    async def scenario() -> list[Any]:
        config = BatcherConfig(max_queued_rows=3, max_batch_delay_ms=0)
        async with running(DynamicBatcher([runner], FAKE_SPEC, config, name="m")) as b:
            futures = b.submit([fake_row(0, 3)], FAR)  # runs (held): no longer queued
            await wait_until(runner.started.is_set)
            futures += b.submit([fake_row(1, 3), fake_row(2, 3)], FAR)
            assert not b.is_full()  # one place left
            with b.expecting(1), pytest.raises(Overloaded) as full:  # 2 queued + 1 announced: the limit
                b.submit([fake_row(3, 3)], FAR)
            assert full.value.message == "model 'm' has 3 rows queued or being prepared (limit 3)"
            futures += b.submit([fake_row(3, 3)], FAR)  # the announced request's row takes its place
            assert b.is_full()
            gate.set()
            results = await gather_all(futures)
        assert not b.is_full()  # stopped: not accepting at all is for the normal path to say
        return results

    assert all(isinstance(r, list) for r in run(scenario()))


def test_retry_after_counts_queued_and_announced_rows_at_the_measured_pace(gate: threading.Event) -> None:
    class Measured(FakeRunner):
        def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
            time.sleep(0.05)  # the measured batch: one row in >= 50 ms
            return super().run(feeds)

    runner = Measured(gate)

    async def scenario() -> tuple[float, float]:
        config = BatcherConfig(max_batch_delay_ms=0)
        async with running(DynamicBatcher([runner], FAKE_SPEC, config)) as b:
            gate.set()
            await gather_all(b.submit([fake_row(0, 3)], FAR))
            gate.clear()
            futures = b.submit([fake_row(1, 3)], FAR)
            await wait_until(lambda: len(runner.calls) == 2)  # held at the gate
            futures += b.submit([fake_row(i, 3) for i in range(2, 4)], FAR)
            queued = b.retry_after_s()
            with b.expecting(2):
                announced = b.retry_after_s()
            gate.set()
            await gather_all(futures)
            return queued, announced

    queued, announced = run(scenario())
    assert 0.05 < queued < 0.2 and announced == pytest.approx(2 * queued)  # 2 rows, then 4, at <= 20 rows/s


def test_a_crashed_dispatcher_fails_what_is_queued_and_closes(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> tuple[list[Any], DynamicBatcher]:
        batcher = DynamicBatcher([FakeRunner()], FAKE_SPEC, BatcherConfig(), name="m")

        def bug() -> float:
            raise RuntimeError("dispatcher bug")

        batcher._dispatch_ready_batches = bug  # type: ignore[method-assign]
        await batcher.start()
        futures = batcher.submit([fake_row(1, 3), fake_row(2, 3)], FAR)  # queued before it runs
        results = await gather_all(futures)
        with pytest.raises(NotReady):
            batcher.submit([fake_row(3, 3)], FAR)
        await batcher.stop(timeout_s=1.0)
        return results, batcher

    with caplog.at_level(logging.ERROR, logger="service.batching.batcher"):
        results, batcher = run(scenario())
    assert all(isinstance(r, RuntimeFailure) and r.message == RuntimeFailure.public_message for r in results)
    crashed = [r for r in caplog.records if r.getMessage() == "model 'm': batch dispatcher crashed"]
    assert len(crashed) == 1 and crashed[0].exc_info is not None and "dispatcher bug" in caplog.text
    assert batcher.queued_rows == 0


def test_no_row_is_lost_or_answered_twice_under_concurrency() -> None:
    class Jittery(FakeRunner):
        def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
            time.sleep(random.random() * 0.003)
            return super().run(feeds)

    runners, observer = [Jittery(), Jittery()], RecordingObserver()
    rng = random.Random(2)
    config = BatcherConfig(max_batch_size=8, max_batch_tokens=200, max_batch_delay_ms=1)

    expired_rows: list[int] = []  # rows submitted with a passed deadline (cancelled or not)

    async def caller(b: DynamicBatcher, index: int) -> list[Any]:
        base = 1000 * (index + 1)
        rows = [fake_row(base + i, rng.randint(1, 40)) for i in range(rng.randint(1, 6))]
        await asyncio.sleep(rng.random() * 0.02)
        deadline = time.monotonic() - 1 if index % 7 == 3 else FAR
        futures = b.submit(rows, deadline)
        if deadline < FAR:
            expired_rows.append(len(rows))
        if index % 9 == 4:
            futures[0].cancel()
        results = await gather_all(futures)
        for row, result in zip(rows, results):
            if isinstance(result, list):
                check_fake_output(result, row)
        return results

    async def scenario() -> list[Any]:
        async with running(DynamicBatcher(runners, FAKE_SPEC, config, observer)) as b:
            per_caller = await asyncio.gather(*(caller(b, c) for c in range(60)))
        return [r for results in per_caller for r in results]

    results = run(scenario())
    seen = Counter(m for r in runners for m in r.markers_seen())
    assert set(seen.values()) == {1}  # no row ran twice
    answered = sum(isinstance(r, list) for r in results)
    dropped = observer.dropped["expired"] + observer.dropped["cancelled"]
    assert len(seen) == answered == len(results) - dropped
    deadline_errors = sum(isinstance(r, DeadlineExceeded) for r in results)
    gone = sum(isinstance(r, asyncio.CancelledError) for r in results)
    # A row both cancelled and past its deadline is counted as expired (caller 31 has one).
    cancelled_and_expired = sum(expired_rows) - deadline_errors
    assert observer.dropped["expired"] == sum(expired_rows) and deadline_errors > 0
    assert observer.dropped["cancelled"] == gone - cancelled_and_expired > 0
    assert cancelled_and_expired == 1
