"""Throughput ratio of two graphs, alternated run by run in one process so both see the same machine.

This VM drifts 1.5-2x between fast and slow phases for minutes: two variants measured one after
the other (even in interleaved rounds of fresh processes) differ by the phase they ran in. Here
the two sessions take turns, one run each, the order flipping every pair, and each pair gives a
ratio; the median ratio is what one graph costs next to the other. Both sessions run without
spinning worker threads, so neither steals the other's cores while idle.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.runtime.layout import from_padded, session_layout
from service.runtime.session import SessionConfig, create_session


def synthetic_feeds(batch: int, seq_len: int, vocab: int = 4000, seed: int = 0) -> dict[str, np.ndarray]:
    """Padded feeds of random ids, [CLS] ... [SEP] in the demo vocab."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab, size=(batch, seq_len), dtype=np.int64)
    ids[:, 0], ids[:, -1] = 2, 3
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


@dataclass(frozen=True)
class PairedRatio:
    seq_len: int
    batch: int
    pairs: int
    median: float  # throughput of `candidate` / throughput of `baseline`
    low_quartile: float
    high_quartile: float


def paired_ratio(baseline: Path, candidate: Path, seq_len: int, batch: int, pairs: int, threads: int) -> PairedRatio:
    config = SessionConfig(intra_op_threads=threads, spinning="off")
    sessions = [create_session(baseline, config), create_session(candidate, config)]
    feeds = synthetic_feeds(batch, seq_len)
    laid_out = [from_padded(session_layout(s), feeds) for s in sessions]
    inputs = [{i.name: f[i.name] for i in s.get_inputs()} for s, f in zip(sessions, laid_out)]
    for session, feed in zip(sessions, inputs):
        for _ in range(3):
            session.run(None, feed)
    ratios = []
    for pair in range(pairs):
        took = [0.0, 0.0]
        for which in (0, 1) if pair % 2 == 0 else (1, 0):
            started = time.perf_counter()
            sessions[which].run(None, inputs[which])
            took[which] = time.perf_counter() - started
        ratios.append(took[0] / took[1])
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    return PairedRatio(seq_len, batch, pairs, statistics.median(ratios), q1, q3)
