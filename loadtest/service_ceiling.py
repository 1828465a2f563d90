"""How close the server comes to the raw graph on a workload's own texts, paired round by round.

    python -m loadtest.service_ceiling [--store DIR] [--workload mixed-uniform]
        [--concurrency 64] [--budgets 0,512,1024] [--layouts serial,side-by-side,concurrent]
        [--rounds 5] [--seconds 5] [--out DIR]

The raw ceiling: one Python thread calling `session.run` back to back on the workload's texts
(tokenized once, beforehand), in a fresh process with the server's session options, no HTTP, no
queue. Budget 0 runs one text per run; a budget N packs texts of similar length into one run up
to N tokens (sorted by length, then cut), as the batcher's length grouping does at best. The best
budget's rows/s is the ceiling; the service's figure is its requests/s under `--concurrency`
closed-loop callers (wrk, one text per request). Every round
measures every raw budget and the service, order rotated, so the machine's slow and fast
stretches hit both; the report gives the median of the per-round ratios service / best raw.

`--layouts` chooses how the raw cells run (each cell a fresh process, every budget in every layout):
`serial` one session with the server's threads, one run at a time (the default, as above);
`side-by-side` one one-thread session per core, a Python thread on each, taking the runs in turn
(the server's layout under load); `concurrent` the naive server's layout: ONE session with its
default options and the server's thread count, and four Python threads calling it at once (what
FastAPI's thread pool does with its concurrent `def` requests). `concurrent` at budget 0 is the
naive server without HTTP; `side-by-side` at the best budget is the most any batcher on these
cores can get out of the graph, so their ratio bounds what squeezeserve can reach against the
naive server on this workload.

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
import threading
import time
from pathlib import Path

import onnxruntime as ort

from loadtest.naive_model import naive_session
from loadtest.run import DEFAULT_CACHE, ensure_store
from loadtest.server import REPO, ServerProcess
from loadtest.vs import CLIENT_NICE, WARM_UP_CALLERS, WARM_UP_S, interval, model_of, workload
from loadtest.workloads.bodies import texts_of, write_bodies
from loadtest.wrk import run_wrk
from service.config import Settings
from service.manifest import Manifest, read_manifest
from service.runtime.layout import make_feeds
from service.runtime.session import create_session
from service.store import one_core_runtime
from service.tokenization import TextTokenizer

LAYOUTS = ("serial", "side-by-side", "concurrent")
CONCURRENT_CALLERS = 4  # Python threads on the one session in the `concurrent` layout


def raw_sessions(entry: Path, manifest: Manifest, layout: str) -> list[ort.InferenceSession]:
    """The sessions a layout runs on, one per Python thread (see the module docstring)."""
    settings = Settings()
    config = settings.session_config()
    if layout == "serial":
        return [create_session(entry / manifest.graph_file, config)]
    if layout == "side-by-side":  # the server's own one-core sessions, as many as it runs at once
        slots = max(1, settings.side_by_side_slots())
        return [one_core_runtime(entry, manifest, config).session for _ in range(slots)]
    return [naive_session(entry / manifest.graph_file, config.intra_op_threads)] * CONCURRENT_CALLERS


def raw_rows_per_s(entry: Path, texts: list[str], budget: int, seconds: float, layout: str = "serial") -> float:
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
    sessions = raw_sessions(entry, manifest, layout)
    feeds = [(len(b), make_feeds(manifest.layout, b, {})) for b in batches]
    for session in set(sessions):
        for _, f in feeds[:3]:
            session.run(None, f)
    done = [0] * len(sessions)
    turn = iter(range(1 << 62))  # next() on a shared iterator: each run taken once, in order
    started = time.perf_counter()
    deadline = started + seconds

    def caller(k: int) -> None:
        while time.perf_counter() < deadline:
            count, f = feeds[next(turn) % len(feeds)]
            sessions[k].run(None, f)
            done[k] += count

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(len(sessions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - started)


def raw_in_fresh_process(entry: Path, bodies: Path, budget: int, seconds: float, layout: str) -> float:
    command = [sys.executable, "-m", "loadtest.service_ceiling", "--raw", str(entry), "--bodies", str(bodies)]
    command += ["--budget", str(budget), "--seconds", str(seconds), "--layout", layout]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=seconds + 120, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", type=Path)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--workload", default="mixed-uniform")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--budgets", default="0,512,1024", help="raw tokens per run (0: one text per run)")
    p.add_argument("--layouts", default="serial", help=f"raw layouts, of {','.join(LAYOUTS)}")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--out", type=Path, default=Path("/tmp/squeezeserve-ceiling"))
    p.add_argument("--client-nice", type=int, default=CLIENT_NICE, help="wrk's niceness above the server's")
    p.add_argument("--raw", type=Path, help=argparse.SUPPRESS)  # internal: one raw cell, prints rows/s
    p.add_argument("--bodies", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--budget", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--layout", choices=LAYOUTS, default="serial", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.raw:
        texts = texts_of(args.bodies.read_text().splitlines())
        print(raw_rows_per_s(args.raw, texts, args.budget, args.seconds, args.layout))
        return 0
    store = ensure_store(args.store, args.cache)
    entry = store / model_of(args.workload)
    load = workload(args.workload, store)
    args.out.mkdir(parents=True, exist_ok=True)
    bodies = write_bodies(load, args.out)
    budgets = [int(b) for b in args.budgets.split(",")]
    layouts = args.layouts.split(",")
    if unknown := set(layouts) - set(LAYOUTS):
        p.error(f"unknown layouts {sorted(unknown)}: choose from {', '.join(LAYOUTS)}")
    raw_cells = [(layout, b) for layout in layouts for b in budgets]
    raw: dict[tuple[str, int], list[float]] = {c: [] for c in raw_cells}
    served: list[float] = []
    url_path, nice = load.path, args.client_nice
    for r in range(args.rounds):
        cells: list[tuple[str, int] | None] = [None, *raw_cells]  # None: the service
        for cell in cells[r % len(cells) :] + cells[: r % len(cells)]:
            if cell is not None:
                raw[cell].append(raw_in_fresh_process(entry, bodies, cell[1], args.seconds, cell[0]))
                continue
            with ServerProcess(store, log_path=args.out / f"squeezeserve-r{r + 1}.log") as server:
                url = server.http_url + url_path
                run_wrk(url, bodies, load.name, WARM_UP_CALLERS, WARM_UP_S, nice=nice)  # not measured
                served.append(run_wrk(url, bodies, load.name, args.concurrency, args.seconds, nice=nice).rps)
        print(f"round {r + 1}/{args.rounds}: service {served[-1]:.1f} req/s, raw "
              + ", ".join(f"{c[0]} {c[1]}: {raw[c][-1]:.1f}" for c in raw_cells), flush=True)  # fmt: skip

    def per_round_best(layout: str) -> list[float]:
        return [max(raw[(layout, b)][r] for b in budgets) for r in range(args.rounds)]

    def paired(numerators: list[float], denominators: list[float]) -> str:
        ratios = [a / b for a, b in zip(numerators, denominators)]
        ratio, low, high = interval(ratios)
        return f"**{ratio:.2f}x** (95 % interval {low:.2f}-{high:.2f}; rounds {', '.join(f'{x:.2f}' for x in ratios)})"

    def describe(layout: str, budget: int) -> str:
        runs = "one text per run" if budget == 0 else f"up to {budget} tokens per run"
        return f"raw {layout}, {runs}"

    lines = [
        f"Workload `{load.name}` ({load.description}), {args.concurrency} callers, {args.rounds} rounds x "
        f"{args.seconds:g} s; `python -m loadtest.service_ceiling {' '.join(sys.argv[1:])}`",
        "",
        "| cell | rows/s (median) |",
        "|---|---:|",
        *(f"| {describe(*c)} | {statistics.median(raw[c]):.1f} |" for c in raw_cells),
        f"| squeezeserve, {args.concurrency} callers | {statistics.median(served):.1f} |",
        "",
        *(
            f"- service / best raw {layout} budget, paired per round: {paired(served, per_round_best(layout))}"
            for layout in layouts
        ),  # fmt: skip
    ]
    if "concurrent" in layouts and 0 in budgets:
        naive = raw[("concurrent", 0)]
        lines += [
            f"- best raw {layout} budget / raw concurrent one text per run (the naive server's layout, no HTTP), "
            f"paired per round: {paired(per_round_best(layout), naive)}"
            for layout in layouts
            if layout != "concurrent"
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    (args.out / "ceiling.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
