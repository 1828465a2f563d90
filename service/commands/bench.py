"""`squeezeserve bench-model`: measure, print the markdown report, optionally write it into a file."""

from __future__ import annotations

import argparse
import shlex
import sys

from service.bench.model_bench import BenchPlan, bench
from service.bench.report import render, write_section


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def run_bench(args: argparse.Namespace) -> int:
    if not args.model_dir and not args.base_size:
        print("bench-model: give --model-dir DIR (repeatable) and/or --base-size", file=sys.stderr)
        return 2
    plan = BenchPlan(_ints(args.seq_lens), _ints(args.batch_sizes), args.threads, args.runs)
    results, machine, mitigation = bench(list(args.model_dir), args.base_size, plan)
    command = "squeezeserve " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    section = render(results, machine, command, args.runs, args.threads, mitigation)
    print(section)
    if args.report:
        write_section(args.report, section)
    return 0
