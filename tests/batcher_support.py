"""Shared pieces for the batcher tests: loop helpers, recording observer, ORT and fake runners."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from tokenizers import Tokenizer

from service.batching.batcher import DynamicBatcher
from service.batching.rows import EncodedRow, RowOutput, RowResult
from service.batching.types import BatchSpec
from service.export.calibration import default_texts
from service.runtime.layout import graph_layout, make_feeds
from service.runtime.session import SessionConfig, create_session

T = TypeVar("T")
FAR = 1e12  # a deadline that never passes
FAKE_SPEC = BatchSpec(pad_values={"input_ids": 0, "token_type_ids": 0}, token_level=(False, True))


def run(coro: Coroutine[Any, Any, T], timeout_s: float = 20.0) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


async def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.002)


async def gather_all(futures: list[asyncio.Future[RowResult]], timeout_s: float = 10.0) -> list[Any]:
    """Results or exceptions, in order."""
    results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), timeout_s)
    return [r.outputs if isinstance(r, RowResult) else r for r in results]


@asynccontextmanager
async def running(batcher: DynamicBatcher) -> AsyncIterator[DynamicBatcher]:
    await batcher.start()
    try:
        yield batcher
    finally:
        await batcher.stop(drain=True, timeout_s=5.0)


class RecordingObserver:
    def __init__(self) -> None:
        self.depths: list[int] = []
        self.dropped: Counter[str] = Counter()
        self.discarded: Counter[str] = Counter()
        self.batches: list[tuple[int, int, int]] = []  # rows, padded tokens, real tokens
        self.waits: list[list[float]] = []
        self.runs_s: list[float] = []

    def on_queue_depth(self, rows: int) -> None:
        self.depths.append(rows)

    def on_rows_dropped(self, reason: str, rows: int) -> None:
        self.dropped[reason] += rows

    def on_rows_discarded(self, reason: str, rows: int) -> None:
        self.discarded[reason] += rows

    def on_batch(self, rows: int, padded: int, real: int, waits: list[float], run_s: float) -> None:
        self.batches.append((rows, padded, real))
        self.waits.append(waits)
        self.runs_s.append(run_s)

    def efficiency(self) -> float:
        return sum(b[2] for b in self.batches) / sum(b[1] for b in self.batches)


class OrtRunner:
    """A real session; feeds only the inputs the graph declares."""

    def __init__(self, graph: Path, threads: int = 1) -> None:
        self.session = create_session(graph, SessionConfig(intra_op_threads=threads, spinning="off"))
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.layout = graph_layout({i.name: len(i.shape) for i in self.session.get_inputs()})
        self.shapes: list[tuple[int, ...]] = []  # [rows, longest] of every batch (its attention mask)

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        self.shapes.append(feeds["attention_mask"].shape)
        return list(self.session.run(None, {k: v for k, v in feeds.items() if k in self.inputs}))

    def alone(self, row: EncodedRow) -> list[np.ndarray]:
        feeds = make_feeds(self.layout, [row.feeds()], {})
        outputs = self.session.run(None, {k: v for k, v in feeds.items() if k in self.inputs})
        return [out if self.layout == "packed" and out.shape[0] == row.length else out[0] for out in outputs]


class FakeRunner:
    """Output 0: sum of the row's real ids ([B, 1]); output 1: ids * 2 ([B, L, 1]).

    Rows are marked by their first id. `gate` holds runs until set; `fail_marker` makes a run fail.
    """

    def __init__(self, gate: threading.Event | None = None, fail_marker: int | None = None, mode: str = "ok") -> None:
        self.gate, self.fail_marker, self.mode = gate, fail_marker, mode
        self.calls: list[np.ndarray] = []
        self.threads: list[str] = []  # the name of the thread each run ran on
        self.started = threading.Event()

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        ids, mask = feeds["input_ids"], feeds["attention_mask"]
        self.calls.append(ids.copy())
        self.threads.append(threading.current_thread().name)
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(10), "test gate never opened"
        if self.fail_marker is not None and self.fail_marker in ids[:, 0]:
            raise RuntimeError("injected failure")
        outputs = [(ids * mask).sum(axis=1, keepdims=True).astype(np.float32), (ids * 2)[..., None].astype(np.float32)]
        if self.mode == "wrong_count":
            return outputs[:1]
        if self.mode == "wrong_batch":
            return [o[:-1] for o in outputs]
        return outputs

    def markers_seen(self) -> list[int]:
        return [int(m) for ids in self.calls for m in ids[:, 0]]


class PackedFakeRunner:
    """FakeRunner's outputs for a packed batch: ids [tokens], mask [rows, longest]."""

    def __init__(self) -> None:
        self.batch_rows: list[int] = []

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        ids, mask = feeds["input_ids"], feeds["attention_mask"]
        self.batch_rows.append(int(mask.shape[0]))
        ends = np.cumsum(mask.sum(axis=1))
        sums = np.add.reduceat(ids, np.concatenate(([0], ends[:-1])))
        return [sums[:, None].astype(np.float32), (ids * 2)[:, None].astype(np.float32)]


PACKED_FAKE_SPEC = BatchSpec(
    pad_values={"input_ids": 0, "token_type_ids": 0}, token_level=(False, True), layout="packed", attention_cost=0.001
)


def fake_row(marker: int, length: int) -> EncodedRow:
    ids = np.array([marker] + [7] * (length - 1), dtype=np.int64)
    return EncodedRow(ids, np.ones_like(ids), np.zeros_like(ids))


def check_fake_output(output: RowOutput, row: EncodedRow) -> None:
    assert output[0].shape == (1,) and output[0][0] == row.input_ids.sum()
    np.testing.assert_array_equal(output[1][:, 0], row.input_ids * 2)  # cut to the row's length


def spec_for(tokenizer: Tokenizer, token_level: bool, runner: OrtRunner) -> BatchSpec:
    pad = tokenizer.token_to_id("[PAD]")
    return BatchSpec(
        pad_values={"input_ids": pad, "token_type_ids": 0}, token_level=(token_level,), layout=runner.layout
    )


def encode(tokenizer: Tokenizer, length: int, offset: int = 0) -> EncodedRow:
    """A real encoding of exactly `length` tokens (truncated from a long text)."""
    texts = default_texts()
    text = " ".join(texts[offset % len(texts) :] + texts[: offset % len(texts)])
    tokenizer.enable_truncation(max_length=length)
    enc = tokenizer.encode(text)
    assert len(enc.ids) == length
    as_array = lambda values: np.array(values, dtype=np.int64)  # noqa: E731
    return EncodedRow(as_array(enc.ids), as_array(enc.attention_mask), as_array(enc.type_ids))
