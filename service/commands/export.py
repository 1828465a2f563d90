"""`squeezeserve export`: one model, or the untrained demo store (--demo)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from service.export.errors import ExportError

if TYPE_CHECKING:
    from service.export.exporter import ExportRequest

EXIT_FAILED = 1


def _request(args: argparse.Namespace, source: str, task: str, name: str) -> ExportRequest:
    from service.export.exporter import ExportRequest

    return ExportRequest(
        source,
        task,
        name,
        args.store,
        args.precision,
        args.quantization,
        args.max_seq_len,
        args.calibration,
        args.force,
        eval_file=args.eval,
        min_agreement=args.min_agreement,
        max_prob_delta=args.max_prob_delta,
        mitigate=not args.no_mitigation,
        min_mitigated_speed=args.min_mitigated_speed,
        layout=args.layout,
    )


def _export_demo(args: argparse.Namespace) -> list[Path]:
    from service.export.demo import BASE_SHAPE, DEMO_NAMES, TINY_SHAPE, write_random_checkpoint
    from service.export.exporter import export_model
    from service.export.progress import Progress

    written = []
    with tempfile.TemporaryDirectory(prefix="squeezeserve-demo-") as tmp:
        for task, name in DEMO_NAMES.items():
            print(f"demo model {name} ({task}): random-init SqueezeBERT ({args.demo_size}), UNTRAINED", file=sys.stderr)
            shape = BASE_SHAPE if args.demo_size == "base" else TINY_SHAPE
            checkpoint = write_random_checkpoint(Path(tmp) / name, task, shape)
            request = _request(args, str(checkpoint), task, name)
            written.append(export_model(request, Progress(5, enabled=not args.quiet)))
    return written


def _export_one(args: argparse.Namespace) -> list[Path]:
    from service.export.exporter import export_model
    from service.export.progress import Progress

    name = args.name or args.model.rstrip("/").split("/")[-1]
    request = _request(args, args.model, args.task, name)
    return [export_model(request, Progress(5, enabled=not args.quiet))]


def run_export(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if not args.demo and (not args.model or not args.task):
        parser.error("export needs --model and --task (or --demo)")
    try:
        written = _export_demo(args) if args.demo else _export_one(args)
    except ExportError as exc:
        print(f"squeezeserve export: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for path in written:
        print(path)
    return 0
