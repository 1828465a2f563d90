"""Median latency of a callable over synthetic batches, and the machine it ran on."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.export.speed import synthetic_feeds
from service.runtime.layout import from_padded, session_layout

Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class Measurement:
    variant: str
    seq_len: int
    batch: int
    median_ms: float
    p90_ms: float

    @property
    def seq_per_s(self) -> float:
        return self.batch / (self.median_ms / 1000.0)


def padded_runner(session: Any) -> Callable[[Feeds], object]:
    """session.run on padded feeds, whatever the graph's layout; the conversion is done once per
    feed dict, outside the timed call."""
    declared = [i.name for i in session.get_inputs()]
    layout = session_layout(session)
    converted: dict[int, tuple[Feeds, dict[str, np.ndarray]]] = {}

    def run(feeds: Feeds) -> object:
        if id(feeds) not in converted:
            laid_out = from_padded(layout, feeds)
            converted[id(feeds)] = (feeds, {k: laid_out[k] for k in declared})  # keeps feeds alive: id stays unique
        return session.run(None, converted[id(feeds)][1])

    return run


def time_runs(run: Callable[[Feeds], object], feeds: Feeds, runs: int) -> list[float]:
    """Wall time of `runs` calls, in ms."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run(feeds)
        times.append((time.perf_counter() - started) * 1000.0)
    return times


def summarize(variant: str, seq_len: int, batch: int, times_ms: list[float]) -> Measurement:
    ordered = sorted(times_ms)
    return Measurement(variant, seq_len, batch, statistics.median(ordered), ordered[int(0.9 * (len(ordered) - 1))])


def measure(variant: str, run: Callable[[Feeds], object], seq_len: int, batch: int, runs: int) -> Measurement:
    feeds = synthetic_feeds(batch, seq_len)
    time_runs(run, feeds, max(3, runs // 10))  # warm-up
    return summarize(variant, seq_len, batch, time_runs(run, feeds, runs))


def machine_details() -> dict[str, str]:
    import onnxruntime

    cpu = platform.processor() or "unknown"
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "isa": ", ".join(isa) or "unknown",
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
    }
