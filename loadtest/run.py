"""End-to-end load test: build/take a store, start the real server, sweep closed- and open-loop load, report.

    .venv/bin/python -m loadtest.run [--store DIR] [--tokens 32,128] [--concurrency 1,4,16,64]
        [--protocols rest-v1,rest-v2,grpc-v1,grpc-v2] [--rates 50,100,200 [--rate-protocols rest-v1,grpc-v1]]
        [--seconds 10] [--extras] [--profile] [--out DIR] [--docs docs/benchmarks.md]

Closed loop (N callers): rest-v1 through wrk, the other protocols through k6 (loadtest/k6/), all
with the same texts. Open loop (--rates, k6 constant-arrival-rate) runs on the first workload for
each of --rate-protocols. Every run is bounded by --seconds (and killed 30 s past it); the whole
run stops starting new cells after --max-minutes. Traffic goes only to the server it starts on
free 127.0.0.1 ports.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

from loadtest.ceiling import raw_ort_ceiling
from loadtest.cells import Planned, closed_cell, open_cell, warm_up, wrk_cell
from loadtest.profile import start_pyspy, stop_pyspy, summarize
from loadtest.protocols import parse_protocols
from loadtest.report import Cell, RunReport, plot, render
from loadtest.server import REPO, ServerProcess
from loadtest.workloads import (
    TextBuilder,
    Workload,
    classify_fixed,
    classify_mixed,
    ner_fixed,
    qa_long_context,
    write_bodies,
)
from service.bench.report import replace_marked
from service.bench.timing import machine_details

DEFAULT_CACHE = Path.home() / ".cache" / "squeezeserve-loadtest"
START, END = "<!-- loadtest:start -->", "<!-- loadtest:end -->"
IMAGE = re.compile(r"\]\(([A-Za-z0-9_.-]+\.png)\)")


def ensure_store(store: Path | None, cache: Path) -> Path:
    if store is not None:
        return store
    store = cache / "store"
    if not (store / "demo-classify" / "manifest.json").exists():
        print(f"building the base-size demo store in {store} (~2 min) ...", flush=True)
        command = [sys.executable, "-m", "service", "export", "--demo", "--store", str(store)]
        subprocess.run(command, cwd=REPO, check=True, timeout=1200)
    return store


def parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if not key.startswith("SQZ_") or not _:
            raise SystemExit(f"--env takes SQZ_NAME=value, got {pair!r}")
        env[key] = value
    return env


def one_cell(server: ServerProcess, workload: Workload, bodies: Path, concurrency: int, seconds: float) -> Cell:
    """A closed-loop rest-v1 cell through wrk (kept for loadtest.compare)."""
    return wrk_cell(server, workload, bodies, concurrency, seconds)


def workloads_for(args: argparse.Namespace, store: Path) -> list[tuple[Workload, list[int]]]:
    builder = TextBuilder(store / args.model / "tokenizer.json")
    sweep = [int(c) for c in args.concurrency.split(",")]
    plan = [(classify_fixed(builder, args.model, int(t)), sweep) for t in args.tokens.split(",")]
    if args.extras:
        extra = [args.extra_concurrency]
        plan.append((classify_mixed(builder, args.model), extra))
        if (store / args.ner_model).exists():
            plan.append((ner_fixed(TextBuilder(store / args.ner_model / "tokenizer.json"), args.ner_model, 128), extra))
        if (store / args.qa_model).exists():
            qa = TextBuilder(store / args.qa_model / "tokenizer.json")
            plan.append((qa_long_context(qa, args.qa_model, 1000, variants=16), [4]))  # ~5 windows each
    return plan


def parse_numbers(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def sweep(
    server: ServerProcess, plan: list[Planned], args: argparse.Namespace, report: RunReport, began: float
) -> None:
    """Closed loop: every workload x protocol x level; open loop: the first workload x rate protocol x rate."""
    protocols, rates = parse_protocols(args.protocols), parse_numbers(args.rates)
    for planned in plan:
        for protocol in protocols:
            warm_up(server, planned, protocol, args.warmup_seconds)
            for level in planned.levels:
                if out_of_time(args, began):
                    return
                cell = closed_cell(server, planned, protocol, level, args.seconds)
                record(report, cell, f"{planned.workload.name} {protocol} c{level}")
    for protocol in parse_protocols(args.rate_protocols) if rates else []:
        if protocol not in protocols:
            warm_up(server, plan[0], protocol, args.warmup_seconds)
        for rate in rates:
            if out_of_time(args, began):
                return
            cell = open_cell(server, plan[0], protocol, rate, args.seconds, args.max_vus)
            record(report, cell, f"{plan[0].workload.name} {protocol} open {rate:g}/s")


def out_of_time(args: argparse.Namespace, began: float) -> bool:
    if time.monotonic() - began <= args.max_minutes * 60:
        return False
    print("time budget reached: skipping the remaining cells", flush=True)
    return True


def record(report: RunReport, cell: Cell, label: str) -> None:
    report.cells.append(cell)
    r = cell.result
    dropped = f", {r.dropped_iterations} dropped" if r.offered_rps is not None else ""
    print(f"{label}: {r.rps:.1f} req/s p50 {r.p50_ms:.1f} ms, {r.errors} errors{dropped}", flush=True)


def profile_cell(server: ServerProcess, workload: Workload, bodies: Path, out: Path, report: RunReport) -> None:
    raw = out / "pyspy.txt"
    spy = start_pyspy(server.pid, 8, raw)
    if spy is None:
        report.profile_note = "Profile skipped: py-spy is not installed (`.venv/bin/pip install py-spy`)."
        return
    holder: list[Cell] = []
    thread = threading.Thread(target=lambda: holder.append(wrk_cell(server, workload, bodies, 16, 10)))
    thread.start()
    err = stop_pyspy(spy, timeout_s=60)
    thread.join(timeout=60)
    if raw.exists() and raw.stat().st_size:
        report.profile = summarize(raw)
        rps = f", {holder[0].result.rps:.0f} req/s under the profiler" if holder else ""
        report.profile_note = f"while wrk ran {workload.name} at concurrency 16 (8 s at 100 Hz{rps}; raw: {raw.name})"
    else:
        report.profile_note = f"Profile failed: {err.strip()[-300:]}"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", type=Path, help="model store (default: build the demo store in --cache)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--model", default="demo-classify")
    p.add_argument("--ner-model", default="demo-ner")
    p.add_argument("--qa-model", default="demo-qa")
    p.add_argument("--tokens", default="32,128")
    p.add_argument("--concurrency", default="1,4,16,64")
    p.add_argument("--protocols", default="rest-v1", help="closed-loop protocols: rest-v1,rest-v2,grpc-v1,grpc-v2")
    p.add_argument("--rates", default="", help="open-loop arrival rates (req/s) on the first workload, e.g. 50,100")
    p.add_argument("--rate-protocols", default="rest-v1,grpc-v1", help="protocols of the open-loop cells")
    p.add_argument("--max-vus", type=int, help="open loop: VUs for arrivals in flight (default: one second's worth)")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--warmup-seconds", type=float, default=3.0)
    p.add_argument("--extras", action="store_true", help="also mixed lengths, NER 128 and QA 1000-token contexts")
    p.add_argument("--extra-concurrency", type=int, default=16)
    p.add_argument("--profile", action="store_true", help="py-spy the server under classify load")
    p.add_argument("--no-ceiling", action="store_true", help="skip the raw ORT ceiling")
    p.add_argument("--env", action="append", default=[], help="SQZ_NAME=value for the server (repeat)")
    p.add_argument("--max-minutes", type=float, default=15.0, help="start no new cell after this")
    p.add_argument("--out", type=Path, default=Path("loadtest/results"))
    p.add_argument("--docs", type=Path, help="also write the report between the loadtest markers of this file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    began = time.monotonic()  # the --max-minutes budget covers the ceiling and the warm-ups too
    for protocols in (args.protocols, args.rate_protocols):
        parse_protocols(protocols)  # a typo fails now, not after the ceiling and the first cells
    store = ensure_store(args.store, args.cache)
    args.out.mkdir(parents=True, exist_ok=True)
    env = parse_env(args.env)
    settings = ", ".join(f"`{k}={v}`" for k, v in env.items()) or "default settings"
    command = "python -m loadtest.run " + shlex.join(argv if argv is not None else sys.argv[1:])
    report = RunReport(command, machine_details(), settings, args.seconds)
    if not args.no_ceiling:
        print("raw ORT ceiling ...", flush=True)
        lens = tuple(int(t) for t in args.tokens.split(","))
        report.ceiling = raw_ort_ceiling(store / args.model, lens, (1, 8, 16))
    plan = [
        Planned(w, levels, write_bodies(w, args.out / "bodies"), args.out / "bodies")
        for w, levels in workloads_for(args, store)
    ]
    report.workload_notes = [
        f"`{p.workload.name}` ({p.workload.path}): {p.workload.description}; {len(p.workload.bodies)} distinct bodies"
        for p in plan
    ]
    with ServerProcess(store, env=env, log_path=args.out / "server.log") as server:
        sweep(server, plan, args, report, began)
        if args.profile:
            profile_cell(server, plan[0].workload, plan[0].bodies, args.out, report)
    report.plots, report.plot_note = plot(report.cells, args.out)
    text = render(report)
    (args.out / "report.md").write_text(text + "\n", encoding="utf-8")
    if args.docs:
        write_marked(args.docs, text, args.out)
    print(text)
    return 0


def relink_images(text: str, out: Path, doc: Path | None) -> str:
    """Image links of a report written in `out`, made relative to `doc` (a file one level down)."""
    if doc is None:
        return text
    rel = Path("..") / out.resolve().relative_to(doc.resolve().parent.parent)
    return IMAGE.sub(lambda m: f"]({rel / m.group(1)})", text)


def write_marked(doc: Path, text: str, out: Path) -> None:
    """Replace what is between the loadtest markers of `doc` (appended at the end if absent)."""
    replace_marked(doc, START, END, f"{START}\n{relink_images(text, out, doc)}\n{END}")


if __name__ == "__main__":
    sys.exit(main())
