"""Closed-loop sweep through the real core (registry, batcher, InferenceService), no transport.

Compares session layouts (instances x intra-op threads) and batching settings on one model, with
N concurrent in-process callers for a fixed time per cell. Prints a markdown table.

    python loadtest/core_sweep.py --store STORE --model NAME [--seconds 10] [--concurrency 8]

The callers share the process (and its 2 cores) with the server side, as they would in a real
server's event loop; use the HTTP/gRPC load tests for end-to-end figures.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

from service.config import Settings
from service.core import build_core, load_models, stop_core
from service.tasks.base import ClassifyParams, TextInput

SENTENCE = "the committee met in vienna to discuss the treaty and its many clauses about trade and borders"
WORDS = SENTENCE.split()  # noqa: SIM905 (a sentence reads better than a word list)
LAYOUTS = [
    ("1 x 2 threads", {"session_instances": 1, "intra_op_threads": 2}),
    ("2 x 1 thread", {"session_instances": 2, "intra_op_threads": 1}),
    ("1 x 2 threads, no batching", {"session_instances": 1, "intra_op_threads": 2, "max_batch_size": 1}),
]


def text_of(tokens: int, seed: int) -> str:
    """About `tokens` WordPiece tokens of plain words (most words are one token in the demo vocab)."""
    return " ".join(WORDS[(seed + i) % len(WORDS)] for i in range(max(1, tokens - 2)))


async def cell(settings: Settings, model: str, tokens: int, concurrency: int, seconds: float) -> tuple[float, float]:
    core = build_core(settings)
    await load_models(core)
    latencies: list[float] = []
    stop_at = time.monotonic() + seconds

    async def caller(i: int) -> None:
        n = 0
        while time.monotonic() < stop_at:
            started = time.monotonic()
            await core.service.classify(model, [TextInput(text_of(tokens, i + n))], ClassifyParams())
            latencies.append(time.monotonic() - started)
            n += 1

    began = time.monotonic()
    await asyncio.gather(*(caller(i) for i in range(concurrency)))
    elapsed = time.monotonic() - began
    await stop_core(core)
    return len(latencies) / elapsed, statistics.median(latencies) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--tokens", default="32,128")
    args = parser.parse_args()
    print(f"concurrency {args.concurrency}, {args.seconds:.0f} s per cell, model {args.model}\n")
    print("| layout | tokens | requests/s | p50 ms |\n|---|---:|---:|---:|")
    for tokens in (int(t) for t in args.tokens.split(",")):
        for label, overrides in LAYOUTS:
            settings = Settings(store_dir=args.store, max_batch_delay_ms=2.0, **overrides)  # type: ignore[arg-type]
            rps, p50 = asyncio.run(cell(settings, args.model, tokens, args.concurrency, args.seconds))
            print(f"| {label} | {tokens} | {rps:.1f} | {p50:.1f} |", flush=True)


if __name__ == "__main__":
    main()
