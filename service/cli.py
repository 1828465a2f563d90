"""`squeezeserve` command line: export, serve, bench-model. Export-only imports stay lazy."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from service.export.accuracy import DEFAULT_MAX_PROB_DELTA, DEFAULT_MIN_AGREEMENT, DEFAULT_MIN_SPEED
from service.manifest import TASKS
from service.runtime.layout import LAYOUTS

EXIT_USAGE = 2


def _export_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("export", help="export a SqueezeBERT checkpoint into the model store")
    p.add_argument("--model", help="hub id (e.g. squeezebert/squeezebert-mnli) or local save_pretrained directory")
    p.add_argument("--task", choices=TASKS)
    p.add_argument("--name", help="model name in the store (default: last part of --model)")
    p.add_argument("--store", type=Path, default=Path("model_store"), help="model store directory")
    p.add_argument("--precision", choices=("int8", "fp32"), default="int8")
    p.add_argument(
        "--quantization",
        choices=("static", "dynamic"),
        default="static",
        help="static: calibrated, batch-invariant (default); dynamic: no calibration, results vary with batch",
    )
    p.add_argument("--max-seq-len", type=int, help="longest sequence the model will serve (default: model's limit)")
    p.add_argument(
        "--layout",
        choices=LAYOUTS,
        default=LAYOUTS[0],
        help="packed (default): batches hold real tokens only; padded: [rows, longest] (for comparison)",
    )
    p.add_argument("--calibration", type=Path, help="calibration text file: one sample per line, TAB for pairs")
    p.add_argument(
        "--eval", type=Path, help="held-out text for the int8 figures and gate (same format; default: built-in)"
    )
    p.add_argument(
        "--min-agreement",
        type=float,
        default=DEFAULT_MIN_AGREEMENT,
        help="int8 gate: least agreement with fp32 on decisive decisions, a fraction (default %(default)s)",
    )
    p.add_argument(
        "--max-prob-delta",
        type=float,
        default=DEFAULT_MAX_PROB_DELTA,
        help="int8 gate: largest |int8 - fp32| probability on held-out text (default %(default)s)",
    )
    p.add_argument(
        "--no-mitigation",
        action="store_true",
        help="fail instead of mitigating outlier layers when int8 misses the gate",
    )
    p.add_argument(
        "--min-mitigated-speed",
        type=float,
        default=DEFAULT_MIN_SPEED,
        help="a mitigated int8 graph must keep this share of plain int8's throughput, measured at export "
        "(default %(default)s; 0: do not measure)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing model of the same name")
    p.add_argument("--demo", action="store_true", help="build untrained base-size demo models for all three tasks")
    p.add_argument(
        "--demo-size", choices=("base", "tiny"), default="base", help="demo model shape (tiny: for smoke tests)"
    )
    p.add_argument("--quiet", action="store_true")


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="serve the model store over REST and gRPC (settings also from SQZ_* env)")
    p.add_argument("--store", type=Path, help="model store directory (SQZ_STORE_DIR, default model_store/)")
    p.add_argument("--host", help="bind address (SQZ_HOST, default 127.0.0.1)")
    p.add_argument("--http-port", type=int, help="REST port (SQZ_HTTP_PORT, default 8000)")
    p.add_argument("--grpc-port", type=int, help="gRPC port (SQZ_GRPC_PORT, default 50051)")
    v = sub.add_parser("validate", help="load every model of a store once and report which are servable")
    v.add_argument("--store", type=Path, default=Path("model_store"))


def _bench_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bench-model", help="seq/s and latency of model graphs across batch sizes and lengths")
    p.add_argument("--model-dir", type=Path, action="append", default=[], help="store entry to measure (repeat)")
    p.add_argument("--base-size", action="store_true", help="compare PyTorch, plain ONNX and ours on a base model")
    p.add_argument("--seq-lens", default="32,128", help="comma-separated sequence lengths")
    p.add_argument("--batch-sizes", default="1,8", help="comma-separated batch sizes")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads")
    p.add_argument("--runs", type=int, default=30, help="timed runs per cell (median reported)")
    p.add_argument("--report", type=Path, help="write the markdown report here")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="squeezeserve", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _export_parser(sub)
    _serve_parser(sub)
    _bench_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "export":
        from service.commands.export import run_export

        return run_export(args, parser)
    if args.command == "serve":
        from service.commands.serve import run_serve

        return run_serve(args)
    if args.command == "validate":
        from service.commands.validate import run_validate

        return run_validate(args)
    from service.commands.bench import run_bench

    return run_bench(args)


if __name__ == "__main__":
    sys.exit(main())
