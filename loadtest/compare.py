"""Batching comparisons over HTTP: length-grouped vs FIFO on mixed lengths, batching on vs off.

    python -m loadtest.compare [--store DIR] [--seconds 10] [--out loadtest/results]

Each variant is a fresh server (settings through SQZ_* env) loaded by wrk in a closed loop;
prints a markdown table and writes it to OUT/compare.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from loadtest.run import DEFAULT_CACHE, ensure_store, one_cell
from loadtest.server import ServerProcess
from loadtest.workloads.bodies import classify_fixed, classify_mixed, write_bodies
from loadtest.workloads.texts import TextBuilder
from loadtest.wrk import run_wrk

MODEL = "demo-classify"
# (label, workload key, concurrency, server env)
VARIANTS = [
    ("mixed lengths, length-grouped (default)", "mixed", 64, {}),
    ("mixed lengths, FIFO batches", "mixed", 64, {"SQZ_GROUP_BY_LENGTH": "false"}),
    ("mixed lengths, no batching", "mixed", 64, {"SQZ_MAX_BATCH_SIZE": "1"}),
    ("32 tokens, batching (default)", "fixed32", 16, {}),
    ("32 tokens, no batching", "fixed32", 16, {"SQZ_MAX_BATCH_SIZE": "1"}),
    ("128 tokens, batching (default)", "fixed128", 16, {}),
    ("128 tokens, no batching", "fixed128", 16, {"SQZ_MAX_BATCH_SIZE": "1"}),
]
HEADER = (
    "| variant | conc. | req/s | p50 ms | p99 ms | errors | rows/batch | padding efficiency |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=Path("loadtest/results"))
    args = parser.parse_args()
    store = ensure_store(args.store, args.cache)
    builder = TextBuilder(store / MODEL / "tokenizer.json")
    workloads = {
        "mixed": classify_mixed(builder, MODEL),
        "fixed32": classify_fixed(builder, MODEL, 32),
        "fixed128": classify_fixed(builder, MODEL, 128),
    }
    bodies = {key: write_bodies(w, args.out / "bodies") for key, w in workloads.items()}
    rows = [HEADER]
    for label, key, concurrency, env in VARIANTS:
        with ServerProcess(store, env=env) as server:
            run_wrk(server.http_url + workloads[key].path, bodies[key], key, 4, 3.0)  # warm-up
            cell = one_cell(server, workloads[key], bodies[key], concurrency, args.seconds)
        r, s = cell.result, cell.server
        rows.append(
            f"| {label} | {concurrency} | {r.rps:.1f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.error_rate:.1%} "
            f"| {s.rows_per_batch:.1f} | {s.padding_efficiency:.2f} |"
        )
        print(rows[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare.md").write_text("\n".join(rows) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
