"""DynamicBatcher: one model's row queue, batch forming, and runs on the model's own worker threads."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from service.batching.observer import SafeObserver
from service.batching.padding import check_row, pad_rows, split_outputs
from service.batching.queue import BatchCost, PendingRow, RowQueue, Selection
from service.batching.rows import EncodedRow, RowOutput, RowResult
from service.batching.throughput import ThroughputEstimator
from service.batching.types import BatcherConfig, BatcherObserver, BatchRunner, BatchSpec, NullObserver
from service.errors import DeadlineExceeded, NotReady, Overloaded, RuntimeFailure, ServiceError

logger = logging.getLogger(__name__)

# Nothing should need it, but the dispatcher re-checks at least this often so that no wait is
# unbounded even if a wake-up were ever missed.
IDLE_RECHECK_S = 1.0
# After stop() gave up on in-flight runs: how long the cancelled dispatcher gets to unwind.
ABANDON_WAIT_S = 1.0


@dataclass(frozen=True)
class _BatchResult:
    outputs: list[RowOutput]
    run_s: float


def _execute(runner: BatchRunner, rows: list[EncodedRow], spec: BatchSpec) -> _BatchResult:
    """Worker-thread side of one batch: pad, run, split (all CPU work stays off the loop)."""
    feeds = pad_rows(rows, spec)
    started = time.monotonic()
    outputs = runner.run(feeds)
    run_s = time.monotonic() - started
    return _BatchResult(split_outputs(outputs, rows, spec), run_s)


def _runner_name(slots: list[int] | None) -> str:
    return "the wide runner" if slots is None else f"runner {slots[0]}"


def _fail(batch: Sequence[PendingRow], make_error: Callable[[], ServiceError]) -> None:
    for pending in batch:
        if not pending.future.done():
            pending.future.set_exception(make_error())


class DynamicBatcher:
    """Gathers rows from concurrent requests into padded batches for one model's runners.

    Several runners: up to len(runners) batches run at once, one per runner. One runner: it has
    every core, one batch at a time, until run_side_by_side() adds one-core runners (see there).
    Each run is on a dedicated worker thread. Everything except runner.run (and padding/splitting)
    happens on the event loop thread, so submit() must be called from that loop; it never blocks
    and never awaits.
    """

    def __init__(
        self,
        runners: Sequence[BatchRunner],
        spec: BatchSpec,
        config: BatcherConfig,
        observer: BatcherObserver | None = None,
        name: str = "model",
    ) -> None:
        if not runners:
            raise ValueError("a DynamicBatcher needs at least one runner")
        # A lone runner is `wide`: its batch takes every slot. Otherwise one slot per runner.
        self._wide: BatchRunner | None = runners[0] if len(runners) == 1 else None
        self._runners = [] if self._wide is not None else list(runners)  # one per slot
        self._spec = spec
        self._cost = BatchCost(packed=spec.layout == "packed", attention=spec.attention_cost)
        self._config = config
        self._name = name
        self._observer = SafeObserver(observer or NullObserver())
        self._queue = RowQueue()
        self._free: list[int] = list(range(self._slots))  # slot indices
        self._expected = 0  # rows of requests announced with expecting() and not yet submitted
        self._last_batch_rows = 1
        self._inflight: dict[asyncio.Future[None], list[PendingRow]] = {}  # one per running batch
        self._throughput = ThroughputEstimator(self._slots)
        self._seq = itertools.count()
        self._wakeup = asyncio.Event()
        self._stopped = asyncio.Event()
        self._closing = False  # no more rows accepted (stop() called, or the dispatcher died)
        self._stop_started = False
        self._reported_depth = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._side_executor: ThreadPoolExecutor | None = None  # runs side by side, one thread each
        self._dispatcher: asyncio.Task[None] | None = None

    @property
    def queued_rows(self) -> int:
        return len(self._queue)

    @property
    def _slots(self) -> int:
        """Batches that may run at once (a wide runner alone: one, and it has every core)."""
        return max(1, len(self._runners))

    @property
    def side_by_side_slots(self) -> int:
        """How many batches may run side by side on a one-core runner (0: not switched on)."""
        return len(self._runners) if self._wide is not None else 0

    async def start(self) -> None:
        if self._dispatcher is not None or self._closing:
            raise RuntimeError(f"batcher {self._name!r} was already started")
        self._loop = asyncio.get_running_loop()
        # Own threads, one per runner: ORT runs must never queue behind the loop's default
        # executor (tokenization, file I/O) or behind each other. The wide runner always runs on
        # the same thread (measured: from a pool of two threads, a lone caller's run took ~0.3 ms longer).
        self._executor = ThreadPoolExecutor(self._slots, thread_name_prefix=f"batcher-{self._name}")
        self._dispatcher = asyncio.create_task(self._dispatch_forever(), name=f"batcher-{self._name}")
        self._dispatcher.add_done_callback(self._on_dispatcher_done)

    def run_side_by_side(self, runner: BatchRunner, slots: int) -> None:
        """From the next batch on: under load, up to `slots` batches run side by side on `runner`
        (a one-core session), one slot each; a batch that is all there is to run (every slot free,
        nothing else queued, no request being prepared) still goes to the wide runner and takes
        every slot, so a lone caller keeps every core.

        Only for a batcher made with one runner (the wide one), once; call it on the loop.
        """
        if self._wide is None or self._runners or slots < 2:
            raise RuntimeError(f"batcher {self._name!r}: side-by-side runs need one wide runner and >= 2 slots")
        self._runners = [runner] * slots
        self._side_executor = ThreadPoolExecutor(slots, thread_name_prefix=f"batcher-{self._name}-side")
        self._throughput = ThroughputEstimator(slots)
        if self._free:  # the wide runner is idle; a wide run in flight frees every slot when it ends
            self._free = list(range(slots))
        self._wakeup.set()

    def submit(self, rows: Sequence[EncodedRow], deadline: float) -> list[asyncio.Future[RowResult]]:
        """Queue rows; one future per row, in order. `deadline` is an absolute time.monotonic()."""
        if self._closing or self._loop is None:
            raise NotReady(f"model {self._name!r} is not accepting requests")
        for row in rows:
            check_row(row)
        self._check_capacity(len(rows))
        now = time.monotonic()
        pending = [PendingRow(next(self._seq), row, self._loop.create_future(), deadline, now) for row in rows]
        self._queue.add(pending)
        self._report_depth()
        self._wakeup.set()
        return [p.future for p in pending]

    async def stop(self, drain: bool = True, timeout_s: float = 30.0) -> None:
        """Stop accepting; drain (or fail) the queue; wait for in-flight runs up to timeout_s."""
        if self._stop_started:
            await self._wait_stopped(timeout_s)
            return
        self._stop_started = self._closing = True
        if self._dispatcher is None:
            self._stopped.set()
            return
        if not drain:
            self._queue.fail_all(self._not_ready)
            self._report_depth()
        self._wakeup.set()
        deadline = time.monotonic() + timeout_s
        await asyncio.wait({self._dispatcher}, timeout=timeout_s)
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=max(0.0, deadline - time.monotonic()))
        if self._queue or self._inflight or not self._dispatcher.done():
            await self._abandon()
        assert self._executor is not None
        for executor in (self._executor, self._side_executor):
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)
        self._stopped.set()

    @contextlib.contextmanager
    def expecting(self, rows: int) -> Iterator[None]:
        """Announce a request's rows while it is being prepared; submit them after the block.

        Raises Overloaded (or NotReady) at once if the rows could not be queued, so the service
        refuses a request before paying for its tokenization: under overload, cheap refusals keep
        the cores for the requests that were accepted. While the block runs, the rows count
        against the queue limit, and a partial batch may wait for them (adaptive_delay).
        """
        if self._closing or self._loop is None:
            raise NotReady(f"model {self._name!r} is not accepting requests")
        self._check_capacity(rows)
        self._expected += rows
        try:
            yield
        finally:
            self._expected -= rows
            self._wakeup.set()  # a batch waiting for these rows need not wait any more

    def is_full(self) -> bool:
        """True when not even one more row could be queued now (rows nobody waits for are dropped first)."""
        if self._closing or self._loop is None:
            return False  # not accepting at all: the normal path answers that (NotReady)
        return not self._has_room(1)

    def retry_after_s(self) -> float:
        """When to come back: the time the queued and announced rows need at the measured pace."""
        return self._throughput.retry_after_s(len(self._queue) + self._expected)

    def _has_room(self, incoming: int) -> bool:
        limit = self._config.max_queued_rows
        if len(self._queue) + self._expected + incoming <= limit:
            return True
        self._drop_dead_rows()  # rows nobody waits for must not hold places in the queue
        return len(self._queue) + self._expected + incoming <= limit

    def _check_capacity(self, incoming: int) -> None:
        if self._has_room(incoming):
            return
        waiting = len(self._queue) + self._expected
        limit = self._config.max_queued_rows
        message = f"model {self._name!r} has {waiting} rows queued or being prepared (limit {limit})"
        raise Overloaded(message, retry_after_s=self.retry_after_s())

    def _drop_dead_rows(self) -> None:
        dead = self._queue.drop_dead(time.monotonic())
        if dead.expired:
            self._observer.on_rows_dropped("expired", dead.expired)
        if dead.cancelled:
            self._observer.on_rows_dropped("cancelled", dead.cancelled)
        self._report_depth()

    def _report_depth(self) -> None:
        depth = len(self._queue)
        if depth != self._reported_depth:
            self._reported_depth = depth
            self._observer.on_queue_depth(depth)

    async def _dispatch_forever(self) -> None:
        while True:
            # Cleared before looking at the state: a submit or a freed runner after this point
            # sets it again, so no wake-up is lost between the check and the wait.
            self._wakeup.clear()
            wait_s = self._dispatch_ready_batches()
            if self._closing and not self._queue:
                return
            await self._sleep_until_woken(wait_s)

    async def _sleep_until_woken(self, timeout_s: float) -> None:
        # A timer that sets the event bounds the wait without a task and a TimeoutError per wait.
        assert self._loop is not None
        timer = self._loop.call_later(timeout_s, self._wakeup.set)
        try:
            await self._wakeup.wait()
        finally:
            timer.cancel()

    def _dispatch_ready_batches(self) -> float:
        """Launch every batch that is ready on a free runner; returns how long to wait for more."""
        while self._free:
            self._drop_dead_rows()
            selection = self._queue.select(self._config, self._cost)
            if selection is None:
                return IDLE_RECHECK_S
            wait_s = self._fill_wait_s(selection)
            if wait_s > 0:
                return wait_s
            self._launch(selection.rows)
        return IDLE_RECHECK_S  # all runners busy; a finishing run wakes us

    def _fill_wait_s(self, selection: Selection) -> float:
        """How much longer the batch may wait to fill; the oldest row's wait is what is bounded."""
        if selection.full or self._closing:
            return 0.0
        if self._config.adaptive_delay and self._expected == 0 and self._last_batch_rows <= 1:
            # Requests come one at a time and none is on its way: waiting would only add latency.
            # Once batches hold several rows, requests overlap and the delay gathers the ones still
            # in flight on the network (expecting() sees only those already being tokenized).
            return 0.0
        delay_s = self._config.max_batch_delay_ms / 1000.0
        return selection.oldest.enqueued_at + delay_s - time.monotonic()

    def _take_slots(self) -> tuple[list[int] | None, BatchRunner]:
        """The slots the next batch takes (None: every slot) and the runner that runs it.

        The wide runner (every slot) while there are no one-core runners yet, or when the batch is
        all there is to run; otherwise one slot and its one-core runner, so that the next batch
        can run beside it.
        """
        wide = self._wide
        all_there_is = not self._queue and not self._expected
        if wide is not None and len(self._free) == self._slots and (not self._runners or all_there_is):
            self._free = []
            return None, wide
        slot = self._free.pop()
        return [slot], self._runners[slot]

    def _launch(self, batch: list[PendingRow]) -> None:
        self._queue.remove(batch)
        self._report_depth()
        slots, runner = self._take_slots()
        dispatched_at = time.monotonic()
        assert self._loop is not None and self._executor is not None
        loop = self._loop
        done: asyncio.Future[None] = loop.create_future()  # for stop() and _abandon()
        self._inflight[done] = batch

        def finished(job: Future[_BatchResult]) -> None:  # on the worker thread, as the run ends
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody to answer
                loop.call_soon_threadsafe(self._finish, slots, batch, dispatched_at, job, done)

        rows = [pending.row for pending in batch]
        executor = self._side_executor if slots is not None and self._side_executor else self._executor
        executor.submit(_execute, runner, rows, self._spec).add_done_callback(finished)

    def _finish(
        self,
        slots: list[int] | None,
        batch: list[PendingRow],
        dispatched_at: float,
        job: Future[_BatchResult],
        done: asyncio.Future[None],
    ) -> None:
        """Back on the loop, straight from the worker thread, in this order: the dispatcher (the
        freed runner may take the next batch at once), the callers (they resume in the loop's
        next turn), and the batch's metrics last (after them: call_soon runs in order)."""
        self._inflight.pop(done, None)
        self._free = list(range(self._slots)) if slots is None else self._free + slots
        if self._queue or self._closing:  # with nothing queued, the next submit wakes it
            self._wakeup.set()
        if done.cancelled():  # abandoned by stop(): its rows were answered already
            return
        done.set_result(None)
        if job.cancelled():  # never started: the executor was shut down
            _fail(batch, self._not_ready)
            return
        error = job.exception()
        if error is not None:
            logger.error(
                "model %r: batch of %d rows failed on %s", self._name, len(batch), _runner_name(slots), exc_info=error
            )
            _fail(batch, lambda: RuntimeFailure(RuntimeFailure.public_message))
            return
        result = job.result()
        self._throughput.record(len(batch), result.run_s * (self._slots if slots is None else len(slots)))
        self._last_batch_rows = len(batch)
        self._resolve(batch, result, dispatched_at)
        assert self._loop is not None
        self._loop.call_soon(self._observe_batch, batch, dispatched_at, result.run_s)

    def _resolve(self, batch: list[PendingRow], result: _BatchResult, dispatched_at: float) -> None:
        """Each row's outputs to its caller, unless nobody waits for them any more.

        A row whose deadline passed while its batch ran gets DeadlineExceeded, not its late
        outputs: the deadline bounds the answer (a gRPC client has given up by then; REST answers
        504 as it would have at that moment), and the pipeline's own wait may have ended already.
        Rows computed for nobody are counted: expired (the deadline passed during the run) or
        cancelled (the caller left).
        """
        now = time.monotonic()
        discarded = {"expired": 0, "cancelled": 0}
        for pending, output in zip(batch, result.outputs):
            if pending.deadline <= now:
                discarded["expired"] += 1
                if not pending.future.done():
                    pending.future.set_exception(DeadlineExceeded("the deadline passed while its batch ran"))
            elif pending.future.done():  # cancelled: the caller left while it ran
                discarded["cancelled"] += 1
            else:
                queue_s = dispatched_at - pending.enqueued_at
                pending.future.set_result(RowResult(output, queue_s, result.run_s, len(batch)))
        for reason, rows in discarded.items():
            if rows:
                self._observer.on_rows_discarded(reason, rows)

    def _observe_batch(self, batch: list[PendingRow], dispatched_at: float, run_s: float) -> None:
        lengths = [pending.length for pending in batch]
        waits = [dispatched_at - pending.enqueued_at for pending in batch]
        self._observer.on_batch(len(batch), len(batch) * max(lengths), sum(lengths), waits, run_s)

    def _not_ready(self) -> ServiceError:
        return NotReady(f"model {self._name!r} is shutting down")

    async def _abandon(self) -> None:
        """stop() ran out of time: answer everything still open with NotReady and cancel."""
        assert self._dispatcher is not None
        logger.warning("model %r: stop timed out with %d batch(es) in flight", self._name, len(self._inflight))
        self._dispatcher.cancel()
        self._queue.fail_all(self._not_ready)
        self._report_depth()
        for done, batch in list(self._inflight.items()):
            _fail(batch, self._not_ready)
            done.cancel()
        # The worker threads cannot be interrupted; their late results are ignored (futures done).
        await asyncio.wait({self._dispatcher}, timeout=ABANDON_WAIT_S)

    async def _wait_stopped(self, timeout_s: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), timeout=timeout_s)

    def _on_dispatcher_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        # A bug, not load: stop taking rows rather than leave callers waiting on a dead queue.
        logger.error("model %r: batch dispatcher crashed", self._name, exc_info=task.exception())
        self._closing = True
        self._queue.fail_all(lambda: RuntimeFailure(RuntimeFailure.public_message))
        self._report_depth()
