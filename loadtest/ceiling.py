"""The raw ONNX Runtime ceiling for a store entry: the served graph alone, no server, synthetic rows."""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

from service.bench.timing import Measurement, measure, padded_runner
from service.runtime.session import SessionConfig, create_session

REPO = Path(__file__).resolve().parent.parent


def raw_ort_ceiling(
    model_dir: Path, seq_lens: tuple[int, ...], batches: tuple[int, ...], threads: int = 2, runs: int = 20
) -> list[Measurement]:
    session = create_session(model_dir / "model.onnx", SessionConfig(intra_op_threads=threads))
    run = padded_runner(session)
    return [measure("int8 served graph", run, seq, batch, runs) for seq in seq_lens for batch in batches]


def ceiling_in_fresh_process(
    model_dir: Path, seq_lens: tuple[int, ...], batches: tuple[int, ...], runs: int = 20
) -> list[Measurement]:
    """The same measurement in a new interpreter (ORT's speed varies per process on this VM)."""
    command = [
        sys.executable, "-m", "loadtest.ceiling", str(model_dir),
        "--seq-lens", ",".join(map(str, seq_lens)), "--batches", ",".join(map(str, batches)), "--runs", str(runs),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, check=True)
    return [Measurement(**m) for m in json.loads(done.stdout)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Raw ORT ceiling of a store entry; prints JSON measurements.")
    p.add_argument("model_dir", type=Path)
    p.add_argument("--seq-lens", default="32,128")
    p.add_argument("--batches", default="1,8,16")
    p.add_argument("--runs", type=int, default=20)
    args = p.parse_args(argv)
    lens = tuple(int(x) for x in args.seq_lens.split(","))
    batches = tuple(int(x) for x in args.batches.split(","))
    found = raw_ort_ceiling(args.model_dir, lens, batches, runs=args.runs)
    print(json.dumps([dataclasses.asdict(m) for m in found]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
