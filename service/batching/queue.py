"""The batcher's waiting rows: arrival order, dropping dead rows, and choosing the next batch."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from service.batching.rows import EncodedRow, RowResult
from service.batching.types import BatcherConfig
from service.errors import DeadlineExceeded, ServiceError


@dataclass(frozen=True)
class PendingRow:
    """One submitted row and the future its caller awaits; seq orders rows by arrival."""

    seq: int
    row: EncodedRow
    future: asyncio.Future[RowResult]
    deadline: float  # absolute time.monotonic()
    enqueued_at: float  # time.monotonic()

    @property
    def length(self) -> int:
        return self.row.length


@dataclass(frozen=True)
class Selection:
    """The rows of the next batch; `full` means waiting longer could not make it bigger."""

    rows: list[PendingRow]
    full: bool

    @property
    def oldest(self) -> PendingRow:
        return self.rows[0]


@dataclass(frozen=True)
class DeadRows:
    expired: int
    cancelled: int


class RowQueue:
    """Rows waiting for a batch, oldest first. Lives on the event loop thread only."""

    def __init__(self) -> None:
        # dict keeps insertion (= arrival) order and removes any row in O(1).
        self._rows: dict[int, PendingRow] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, rows: Iterable[PendingRow]) -> None:
        for pending in rows:
            self._rows[pending.seq] = pending

    def remove(self, rows: Iterable[PendingRow]) -> None:
        for pending in rows:
            del self._rows[pending.seq]

    def drop_dead(self, now: float) -> DeadRows:
        """Drop rows whose deadline passed or whose caller left (future cancelled).

        A passed deadline counts as expired even when the future is already cancelled: the
        pipeline cancels its rows when its own wait ends at the deadline.
        """
        expired = cancelled = 0
        for pending in list(self._rows.values()):
            if pending.deadline <= now:
                if not pending.future.done():
                    pending.future.set_exception(DeadlineExceeded("deadline passed while queued"))
                expired += 1
            elif pending.future.done():  # cancelled by the caller; nobody reads it
                cancelled += 1
            else:
                continue
            del self._rows[pending.seq]
        return DeadRows(expired, cancelled)

    def fail_all(self, make_error: Callable[[], ServiceError]) -> int:
        """Answer every queued row with a fresh error and empty the queue; returns how many."""
        count = len(self._rows)
        for pending in self._rows.values():
            if not pending.future.done():
                pending.future.set_exception(make_error())
        self._rows.clear()
        return count

    def select(self, config: BatcherConfig, cost: BatchCost | None = None) -> Selection | None:
        """The next batch: the oldest row plus the best fitting others, without removing them."""
        if not self._rows:
            return None
        queued = list(self._rows.values())
        oldest = queued[0]
        if config.group_by_length:
            # Rows closest in length to the oldest first (older first on ties): least padding.
            others = sorted(queued[1:], key=lambda p: (abs(p.length - oldest.length), p.seq))
        else:
            others = queued[1:]
        chosen = _fill(oldest, others, config, cost or BatchCost())
        full = len(chosen) == config.max_batch_size or len(chosen) < len(queued)
        return Selection(chosen, full)


@dataclass(frozen=True)
class BatchCost:
    """What a batch costs the graph, for the padding-efficiency floor.

    packed: the linear layers run on real tokens only (service/runtime/layout.py), so padding
    costs only in attention; padded: every op runs on rows x longest. attention: the cost of one
    (query, key) pair of the padded attention view, in units of one token through the linear
    layers (0: attention is not weighed, the padded layout's historical rule real / padded).
    """

    packed: bool = False
    attention: float = 0.0

    def efficiency(self, rows: int, longest: int, real: int, squares: int) -> float:
        """Useful cost / paid cost of a batch (1.0: no padding work at all)."""
        linear = real if self.packed else rows * longest
        return (real + self.attention * squares) / (linear + self.attention * rows * longest * longest)


def _fill(oldest: PendingRow, candidates: list[PendingRow], config: BatcherConfig, cost: BatchCost) -> list[PendingRow]:
    """Greedy fill under the row and padded-place limits; the oldest row always goes, even alone.

    FIFO stops at the first row that does not fit (skipping it would reorder the queue);
    grouping keeps looking, since a later candidate may be shorter and still fit, and only takes
    rows that keep the batch's cost efficiency at or above config.min_padding_efficiency.
    """
    chosen = [oldest]
    longest, real, squares = oldest.length, oldest.length, oldest.length**2
    for pending in candidates:
        if len(chosen) >= config.max_batch_size:
            break
        grown = max(longest, pending.length)
        rows = len(chosen) + 1
        fits = rows * grown <= config.max_batch_tokens  # bounds the (attention) view's memory too
        if config.group_by_length:
            efficiency = cost.efficiency(rows, grown, real + pending.length, squares + pending.length**2)
            fits = fits and efficiency >= config.min_padding_efficiency
        if fits:
            chosen.append(pending)
            longest, real, squares = grown, real + pending.length, squares + pending.length**2
        elif not config.group_by_length:
            break
    return chosen
