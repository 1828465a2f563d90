"""How close the server comes to the raw graph on a workload's own texts, paired round by round.

    python -m loadtest.service_ceiling [--store DIR] [--workload mixed-uniform]
        [--concurrency 64] [--budgets 0,512,1024] [--rounds 5] [--seconds 5] [--out DIR]

The raw ceiling: one Python thread calling `session.run` back to back on the workload's texts
(tokenized once, beforehand), in a fresh process with the server's session options, no HTTP, no
queue. Budget 0 runs one text per run; a budget N packs texts of similar length into one run up
to N tokens (sorted by length, then cut), as the batcher's length grouping does at best. The best
budget's rows/s is the ceiling; the service's figure is its requests/s under `--concurrency`
closed-loop callers (wrk, one text per request). Every round
measures every raw budget and the service, order rotated, so the machine's slow and fast
stretches hit both; the report gives the median of the per-round ratios service / best raw.

As in `loadtest.vs`: every round starts a fresh server, warmed up with a second of traffic (a
process on this VM can keep a fast or slow mode for its whole life), and wrk runs `--client-nice`
below the server (it shares the two cores; the raw loop has no client at all).
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

from loadtest.run import DEFAULT_CACHE, ensure_store
from loadtest.server import REPO, ServerProcess
from loadtest.vs import CLIENT_NICE, WARM_UP_CALLERS, WARM_UP_S, interval, model_of, workload
from loadtest.workloads.bodies import texts_of, write_bodies
from loadtest.wrk import run_wrk
from service.config import Settings
from service.manifest import read_manifest
from service.runtime.layout import make_feeds
from service.runtime.session import create_session
from service.tokenization import TextTokenizer


def raw_rows_per_s(entry: Path, texts: list[str], budget: int, seconds: float) -> float:
    """Rows per second of back-to-back runs on `texts` (see the module docstring)."""
    manifest = read_manifest(entry, verify_graph=False)
    tokenizer = TextTokenizer.from_file(entry / manifest.tokenizer_file, manifest.max_seq_len)
    rows = [tokenizer.encode(text).row().feeds() for text in texts]  # the server's own encoding
    rows.sort(key=lambda r: len(r["input_ids"]))
    batches, current = [], []
    for row in rows:
        if current and sum(len(r["input_ids"]) for r in current) + len(row["input_ids"]) > budget:
            batches.append(current)
            current = []
        current.append(row)
    batches.append(current)
    random.Random(0).shuffle(batches)
    session = create_session(entry / "model.onnx", Settings().session_config())
    layout = manifest.layout
    feeds = [(len(b), make_feeds(layout, b, {})) for b in batches]
    for _, f in feeds[:3]:
        session.run(None, f)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for count, f in feeds:
            session.run(None, f)
            done += count
            if time.perf_counter() - started >= seconds:
                break
    return done / (time.perf_counter() - started)


def raw_in_fresh_process(entry: Path, bodies: Path, budget: int, seconds: float) -> float:
    command = [sys.executable, "-m", "loadtest.service_ceiling", "--raw", str(entry), "--bodies", str(bodies)]
    command += ["--budget", str(budget), "--seconds", str(seconds)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=seconds + 120, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", type=Path)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--workload", default="mixed-uniform")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--budgets", default="0,512,1024", help="raw tokens per run (0: one text per run)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--out", type=Path, default=Path("/tmp/squeezeserve-ceiling"))
    p.add_argument("--client-nice", type=int, default=CLIENT_NICE, help="wrk's niceness above the server's")
    p.add_argument("--raw", type=Path, help=argparse.SUPPRESS)  # internal: one raw cell, prints rows/s
    p.add_argument("--bodies", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--budget", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.raw:
        print(raw_rows_per_s(args.raw, texts_of(args.bodies.read_text().splitlines()), args.budget, args.seconds))
        return 0
    store = ensure_store(args.store, args.cache)
    entry = store / model_of(args.workload)
    load = workload(args.workload, store)
    args.out.mkdir(parents=True, exist_ok=True)
    bodies = write_bodies(load, args.out)
    budgets = [int(b) for b in args.budgets.split(",")]
    raw: dict[int, list[float]] = {b: [] for b in budgets}
    served: list[float] = []
    url_path, nice = load.path, args.client_nice
    for r in range(args.rounds):
        cells = [("service", 0)] + [("raw", b) for b in budgets]
        for kind, budget in cells[r % len(cells) :] + cells[: r % len(cells)]:
            if kind == "raw":
                raw[budget].append(raw_in_fresh_process(entry, bodies, budget, args.seconds))
                continue
            with ServerProcess(store, log_path=args.out / f"squeezeserve-r{r + 1}.log") as server:
                url = server.http_url + url_path
                run_wrk(url, bodies, load.name, WARM_UP_CALLERS, WARM_UP_S, nice=nice)  # not measured
                served.append(run_wrk(url, bodies, load.name, args.concurrency, args.seconds, nice=nice).rps)
        print(f"round {r + 1}/{args.rounds}: service {served[-1]:.1f} req/s, raw "
              + ", ".join(f"{b}: {raw[b][-1]:.1f}" for b in budgets), flush=True)  # fmt: skip
    best = [max(raw[b][r] for b in budgets) for r in range(args.rounds)]
    ratio, low, high = interval([s / c for s, c in zip(served, best)])
    lines = [
        f"Workload `{load.name}` ({load.description}), {args.concurrency} callers, {args.rounds} rounds x "
        f"{args.seconds:g} s; `python -m loadtest.service_ceiling {' '.join(sys.argv[1:])}`",
        "",
        "| cell | rows/s (median) |",
        "|---|---:|",
        *(
            f"| raw, {'one text per run' if b == 0 else f'up to {b} tokens per run'} | "
            f"{statistics.median(raw[b]):.1f} |"
            for b in budgets
        ),  # fmt: skip
        f"| squeezeserve, {args.concurrency} callers | {statistics.median(served):.1f} |",
        "",
        f"service / best raw budget, paired per round: **{ratio:.2f}x** (95 % interval {low:.2f}-{high:.2f}; "
        f"rounds {', '.join(f'{s / c:.2f}' for s, c in zip(served, best))})",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    (args.out / "ceiling.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
