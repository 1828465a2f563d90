"""squeezeserve against the simplest server a user could write on the same graph, paired.

    python -m loadtest.vs [--store DIR] [--model demo-classify] [--workloads classify-32,...]
        [--concurrency 1,16,64] [--rounds 6] [--seconds 6] [--env SQZ_X=1 ...] [--out DIR]

Both servers run for the whole comparison on the same store entry (squeezeserve: `serve`; the
other: loadtest/naive_app.py, one ORT session and a plain `def` endpoint, no batching), with the
same ORT thread count. Every round measures every cell on both servers back to back, the order
rotating between rounds and cells, so the machine's fast and slow stretches (1.5-2x here, for
minutes) hit both alike; only the paired ratios say anything. Per cell the report gives each
server's median req/s and p99, the median paired ratio and its 95 % interval (t-interval over the
rounds' log ratios), and CPU seconds per request from /proc.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from loadtest.probes import process_cpu_s
from loadtest.run import DEFAULT_CACHE, ensure_store
from loadtest.server import REPO, ServerProcess, free_port, http_status
from loadtest.workloads import TextBuilder, Workload, classify_fixed, classify_spread, write_bodies
from loadtest.wrk import run_wrk

# t(0.975, n-1) for n = 2..12 rounds; more rounds use 2.2 (close enough for a report).
T975 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23, 11: 2.20}
WORKLOADS = ("classify-32", "classify-128", "mixed-uniform", "mixed-tail")


def workload(name: str, builder: TextBuilder, model: str) -> Workload:
    if name.startswith("classify-"):
        return classify_fixed(builder, model, int(name.removeprefix("classify-")))
    if name in ("mixed-uniform", "mixed-tail"):
        return classify_spread(builder, model, name.removeprefix("mixed-"))
    raise SystemExit(f"unknown workload {name!r} (known: {', '.join(WORKLOADS)})")


class NaiveServer:
    """loadtest/naive_app.py under uvicorn on a free 127.0.0.1 port."""

    def __init__(self, entry: Path, threads: int) -> None:
        self.port = free_port()
        self.http_url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "SQZ_NAIVE_MODEL_DIR": str(entry), "SQZ_NAIVE_THREADS": str(threads)}
        command = [sys.executable, "-m", "uvicorn", "loadtest.naive_app:app", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--log-level", "warning"]
        self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while http_status(self.http_url + "/readyz") != 200:
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError("the naive server did not start")
            time.sleep(0.2)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()


@dataclass
class Side:
    rps: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    errors: int = 0


def measure(url: str, pid: int, bodies: Path, name: str, concurrency: int, seconds: float, side: Side) -> None:
    cpu = process_cpu_s(pid)
    result = run_wrk(url + "/v1/classify", bodies, name, concurrency, seconds)
    used = process_cpu_s(pid) - cpu
    side.rps.append(result.rps)
    side.p99.append(result.p99_ms)
    side.cpu_ms.append(1000 * used / max(1, result.requests))
    side.errors += result.errors


def interval(ratios: list[float]) -> tuple[float, float, float]:
    """Median paired ratio and a 95 % t-interval of the geometric mean."""
    logs = [math.log(r) for r in ratios]
    if len(logs) < 2:
        return ratios[0], ratios[0], ratios[0]
    half = T975.get(len(logs) - 1, 2.2) * statistics.stdev(logs) / math.sqrt(len(logs))
    mean = statistics.fmean(logs)
    return statistics.median(ratios), math.exp(mean - half), math.exp(mean + half)


def render(
    cells: dict[tuple[str, int], tuple[Side, Side]], descriptions: dict[str, str], args: argparse.Namespace
) -> str:
    lines = [
        "| workload | callers | squeezeserve req/s | naive req/s | ratio (median) | 95 % interval | "
        "p99 ms (ours / naive) | CPU ms per request (ours / naive) |",
        "|---|---:|---:|---:|---:|---|---|---|",
    ]
    for (name, concurrency), (ours, naive) in cells.items():
        ratio, low, high = interval([a / b for a, b in zip(ours.rps, naive.rps)])
        p99 = f"{statistics.median(ours.p99):.0f} / {statistics.median(naive.p99):.0f}"
        cpu = f"{statistics.median(ours.cpu_ms):.1f} / {statistics.median(naive.cpu_ms):.1f}"
        errors = f" ({ours.errors}/{naive.errors} errors)" if ours.errors or naive.errors else ""
        lines.append(
            f"| {name} | {concurrency} | {statistics.median(ours.rps):.1f} | {statistics.median(naive.rps):.1f} | "
            f"**{ratio:.2f}x** | {low:.2f}-{high:.2f} | {p99} | {cpu}{errors} |"
        )
    lines.append("")
    lines += [f"- `{name}`: {text}" for name, text in descriptions.items()]
    command = "python -m loadtest.vs " + " ".join(sys.argv[1:])
    lines.append(f"- {args.rounds} rounds x {args.seconds:g} s per cell and server, order rotated; `{command}`")
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", type=Path, help="model store (default: the demo store in the cache)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--model", default="demo-classify")
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    p.add_argument("--concurrency", default="1,16,64")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--threads", type=int, default=2, help="ORT intra-op threads for both servers")
    p.add_argument("--env", action="append", default=[], help="SQZ_X=value for squeezeserve (repeat)")
    p.add_argument("--out", type=Path, default=Path("/tmp/squeezeserve-vs"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    store = ensure_store(args.store, args.cache)
    builder = TextBuilder(store / args.model / "tokenizer.json")
    names = args.workloads.split(",")
    loads = {name: workload(name, builder, args.model) for name in names}
    bodies = {name: write_bodies(w, args.out) for name, w in loads.items()}
    concurrency = [int(c) for c in args.concurrency.split(",")]
    env = {"SQZ_INTRA_OP_THREADS": str(args.threads)}
    for pair in args.env:
        key, _, value = pair.partition("=")
        env[key] = value
    cells = {(n, c): (Side(), Side()) for n in names for c in concurrency}
    naive = NaiveServer(store / args.model, args.threads)
    try:
        with ServerProcess(store, env=env, log_path=args.out / "squeezeserve.log") as ours:
            for r in range(args.rounds):
                for k, ((name, c), (mine, theirs)) in enumerate(cells.items()):
                    pair = [(ours.http_url, ours.pid, mine), (naive.http_url, naive.pid, theirs)]
                    for url, pid, side in pair[(r + k) % 2 :] + pair[: (r + k) % 2]:
                        measure(url, pid, bodies[name], name, c, args.seconds, side)
                print(f"round {r + 1}/{args.rounds} done", flush=True)
    finally:
        naive.stop()
    text = render(cells, {n: w.description for n, w in loads.items()}, args)
    print(text)
    (args.out / "vs.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
