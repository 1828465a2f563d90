"""`squeezeserve validate`: load every store entry once (manifest, hash, tokenizer, one ORT run)."""

from __future__ import annotations

import argparse
import sys

from service.store import scan_store


def run_validate(args: argparse.Namespace) -> int:
    good, broken = scan_store(args.store)
    for entry in good:
        m = entry.manifest
        trained = "trained" if m.trained else "UNTRAINED demo weights"
        print(f"ok      {m.name:24s} {m.task:24s} {m.precision:5s} max_seq_len={m.max_seq_len} ({trained})")
    for failure in broken:
        print(f"broken  {failure.path}: {failure.reason}", file=sys.stderr)
    if not good:
        print(f"no servable model in {args.store}/ (build one with `squeezeserve export`)", file=sys.stderr)
        return 1
    print(f"model store {args.store}/ validated: {len(good)} model(s) load and run in ONNX Runtime", file=sys.stderr)
    return 0
