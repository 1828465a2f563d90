"""Every load benchmark in one command, and the generated part of docs/benchmarks.md.

    python -m loadtest.all [--quick] [--skip soak,baseline] [--reuse sweep,soak] [--out loadtest/results]
        [--docs docs/benchmarks.md]

Runs, one after the other and each in its own process (so each starts its own servers): the
sweep (loadtest.run: fixed 32/128/384 tokens, mixed lengths, NER, QA with long contexts, over
REST and gRPC, task API and KServe v2, closed-loop concurrency and open-loop arrival rates, the raw
ceiling, a py-spy profile), the paired targets (loadtest.targets), the batching comparisons
(loadtest.compare), the overload scenario (loadtest.overload), the naive FastAPI + transformers
baseline (loadtest.baseline) and the 10-minute soak (loadtest.soak). Each part writes its own
markdown under --out; this concatenates them between the loadtest markers of --docs, with the
commands that produced them. About 35 minutes on 2 cores (--quick: a few minutes, for a smoke run).
--reuse re-assembles the document from parts already in --out (e.g. after re-running one part).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from loadtest.run import END, START, relink_images
from loadtest.server import REPO
from service.bench.report import replace_marked
from service.bench.timing import machine_details


@dataclass(frozen=True)
class Part:
    key: str
    title: str
    module: str
    args: tuple[str, ...]
    quick_args: tuple[str, ...]
    output: str  # markdown file the part writes under --out


PARTS = (
    Part(
        "sweep",
        "Sweep: workloads x protocols x load",
        "loadtest.run",
        (
            "--tokens",
            "32,128,384",
            "--concurrency",
            "1,4,16,64",
            "--protocols",
            "rest-v1,rest-v2,grpc-v1,grpc-v2",
            "--rates",
            "25,50,100,150",
            "--extras",
            "--profile",
            "--seconds",
            "8",
            "--max-minutes",
            "30",
        ),
        (
            "--tokens",
            "32",
            "--concurrency",
            "1,8",
            "--protocols",
            "rest-v1,grpc-v1",
            "--rates",
            "40",
            "--seconds",
            "3",
            "--warmup-seconds",
            "1",
        ),
        "report.md",
    ),  # fmt: skip
    Part(
        "targets", "Targets", "loadtest.targets", ("--rounds", "5"), ("--rounds", "1", "--seconds", "3"), "targets.md"
    ),  # noqa: E501
    Part("compare", "Batching comparisons", "loadtest.compare", (), ("--seconds", "3"), "compare.md"),
    Part("overload", "Overload", "loadtest.overload", (), ("--seconds", "5", "--capacity-seconds", "3"), "overload.md"),
    Part("baseline", "Naive baseline", "loadtest.baseline", (), ("--seconds", "3"), "baseline.md"),
    Part("soak", "Soak", "loadtest.soak", ("--minutes", "10"), ("--minutes", "0.5"), "soak.md"),
)


def part_command(part: Part, quick: bool, out: Path) -> list[str]:
    shown = out.relative_to(REPO) if out.is_relative_to(REPO) else out  # commands stay valid in any clone
    return [sys.executable, "-m", part.module, *(part.quick_args if quick else part.args), "--out", str(shown)]


def run_part(part: Part, quick: bool, out: Path) -> tuple[str, float, int]:
    command = part_command(part, quick, out)
    print(f"== {part.key}: {shlex.join(command[1:])}", flush=True)
    started = time.monotonic()
    code = subprocess.run(command, cwd=REPO, check=False).returncode
    shown, seconds = "python " + shlex.join(command[1:]), time.monotonic() - started
    record = {"command": shown, "seconds": seconds, "code": code}
    (out / f"{part.key}.run.json").write_text(json.dumps(record) + "\n", encoding="utf-8")
    return shown, seconds, code


def reused_part(part: Part, quick: bool, out: Path) -> tuple[str, float, int]:
    """A part's last run in --out (its report and its .run.json), without running it again."""
    saved = out / f"{part.key}.run.json"
    if saved.exists():
        record = json.loads(saved.read_text(encoding="utf-8"))
        return str(record["command"]), float(record["seconds"]), int(record["code"])
    if not (out / part.output).exists():
        raise SystemExit(f"--reuse {part.key}: no earlier report {out / part.output}")
    return "python " + shlex.join(part_command(part, quick, out)[1:]), float("nan"), 0


def section(part: Part, command: str, minutes: float, code: int, out: Path, docs: Path | None) -> str:
    produced = out / part.output
    status = "" if code == 0 else f" — **exited {code}**; see its output"
    took = "time not recorded" if minutes != minutes else f"{minutes:.1f} min"  # NaN: reused, no record
    head = f"### {part.title}\n\n`{command}` ({took}{status})\n"
    if not produced.exists():
        return head + "\n(no report written)\n"
    text = produced.read_text(encoding="utf-8").strip()
    text = re.sub(r"^## ", "#### ", text, flags=re.M)  # nest the parts' own headings
    return head + "\n" + relink_images(text, out, docs) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short cells, for a smoke run (not for the report)")
    p.add_argument("--skip", default="", help="comma-separated parts to leave out: " + ",".join(x.key for x in PARTS))
    p.add_argument("--reuse", default="", help="parts not to run again: take their last report from --out")
    p.add_argument("--out", type=Path, default=Path("loadtest/results"))
    p.add_argument("--docs", type=Path, help="write the generated section between the loadtest markers of this file")
    args = p.parse_args(argv)
    skip, reuse = set(filter(None, args.skip.split(","))), set(filter(None, args.reuse.split(",")))
    unknown = (skip | reuse) - {x.key for x in PARTS}
    if unknown:
        raise SystemExit(f"--skip/--reuse: unknown parts {sorted(unknown)}")
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    sections, failed, missing = [], [], []
    for part in (x for x in PARTS if x.key not in skip):
        reused = part.key in reuse
        command, seconds, code = (reused_part if reused else run_part)(part, args.quick, args.out)
        if code:
            failed.append(part.key)
            if not (args.out / part.output).exists():
                missing.append(part.key)
        sections.append(section(part, command, seconds / 60, code, args.out, args.docs))
    m = machine_details()
    myself = "python -m loadtest.all " + shlex.join(argv if argv is not None else sys.argv[1:])
    reused_note = (
        f" Parts {', '.join(sorted(reuse))} were taken from their last run in the output folder (each names its"
        " own command and duration); the others ran in this invocation."
        if reuse
        else ""
    )
    header = (
        "## Load tests (`make loadtest`)\n\n"
        f"Assembled {time.strftime('%Y-%m-%d %H:%M')} by `{myself}` on {m['cpu']}, {m['cores']} cores "
        f"({m['isa']}), Python {m['python']}, onnxruntime {m['onnxruntime']}.{reused_note} Every part below "
        "names the command that reproduces it alone; load generators run on the same 2 cores as the server "
        "and their CPU is reported.\n"
    )
    block = "\n".join([header, *sections])
    (args.out / "all.md").write_text(block + "\n", encoding="utf-8")
    if args.docs:
        replace_marked(args.docs, START, END, f"{START}\n{block}\n{END}")
    # A part that exits non-zero after writing its report (overload: a check did not pass) is a
    # result, shown as such in the document; only a part that wrote nothing fails the command.
    print(f"done in {(time.monotonic() - began) / 60:.1f} min; parts that exited non-zero: {failed or 'none'}")
    if missing:
        print(f"no report from: {missing}", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
