"""Raw ONNX Runtime cost of one batch of mixed-length rows, by how the batch is laid out.

    python -m loadtest.packing --padded STORE/demo-classify --packed STORE2/demo-classify \
        [--rows 32] [--min-len 8] [--max-len 256] [--rounds 7] [--threads 2] [--out FILE]

No server, no Python around the runs: what each layout costs ORT for the same rows. Strategies:
- `one-by-one`: every row alone (what a server without batching pays; no padding at all);
- `padded`: all rows in one [rows, longest] batch;
- `padded-grouped`: rows sorted by length and cut into batches that stay >= 80 % real tokens
  (the batcher's length grouping before packing);
- `packed`: all rows in one packed batch (real tokens only; attention alone is padded).
Rounds run every strategy once, in a rotated order, so the machine's drift hits them alike; the
report gives per-strategy medians and the per-round ratio to one-by-one.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from service.manifest import read_manifest
from service.runtime.layout import make_feeds
from service.runtime.session import SessionConfig, create_session

Row = dict[str, np.ndarray]


def make_rows(count: int, low: int, high: int, vocab: int, seed: int) -> list[Row]:
    rng = np.random.default_rng(seed)
    rows = []
    for length in rng.integers(low, high + 1, size=count):
        ids = rng.integers(1000, vocab, size=int(length)).astype(np.int64)
        rows.append({"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)})
    return rows


def grouped(rows: list[Row], min_efficiency: float = 0.8, max_rows: int = 32) -> list[list[Row]]:
    ordered = sorted(rows, key=lambda r: len(r["input_ids"]))
    batches: list[list[Row]] = []
    for row in ordered:
        if batches:
            batch = batches[-1]
            longest = max(len(row["input_ids"]), *(len(r["input_ids"]) for r in batch))
            real = sum(len(r["input_ids"]) for r in batch) + len(row["input_ids"])
            if len(batch) < max_rows and real >= min_efficiency * longest * (len(batch) + 1):
                batch.append(row)
                continue
        batches.append([row])
    return batches


def strategies(padded: Path, packed: Path, threads: int, rows: list[Row]) -> dict[str, Callable[[], None]]:
    config = SessionConfig(intra_op_threads=threads)
    pad_session = create_session(padded / read_manifest(padded).graph_file, config)
    pack_session = create_session(packed / read_manifest(packed).graph_file, config)
    assert read_manifest(packed).layout == "packed" and read_manifest(padded).layout == "padded"

    def run(session: object, layout: str, batch: list[Row]) -> None:
        session.run(None, make_feeds(layout, batch, {}))  # type: ignore[attr-defined]

    groups = grouped(rows)
    return {
        "one-by-one": lambda: [run(pad_session, "padded", [r]) for r in rows] and None,
        "padded": lambda: run(pad_session, "padded", rows),
        "padded-grouped": lambda: [run(pad_session, "padded", g) for g in groups] and None,
        "packed": lambda: run(pack_session, "packed", rows),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--padded", type=Path, required=True, help="store entry exported with --layout padded")
    parser.add_argument("--packed", type=Path, required=True, help="the same checkpoint exported packed")
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--min-len", type=int, default=8)
    parser.add_argument("--max-len", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    rows = make_rows(args.rows, args.min_len, args.max_len, 30000, args.seed)
    runs = strategies(args.padded, args.packed, args.threads, rows)
    names = list(runs)
    for fn in runs.values():  # warm-up: arenas at their peak shapes
        fn()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            started = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - started)
    tokens = sum(len(r["input_ids"]) for r in rows)
    lines = [
        f"{args.rows} rows of {args.min_len}-{args.max_len} tokens ({tokens} tokens), {args.threads} threads, "
        f"{args.rounds} rotated rounds",
        "",
        "| strategy | ms per batch (median) | ms per row | rows/s | x one-by-one (median of paired rounds) |",
        "|---|---:|---:|---:|---:|",
    ]
    base = times["one-by-one"]
    for name in names:
        median = statistics.median(times[name])
        ratio = statistics.median(b / t for b, t in zip(base, times[name]))
        lines.append(
            f"| {name} | {median * 1e3:.1f} | {median * 1e3 / args.rows:.2f} | {args.rows / median:.1f} | {ratio:.2f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
