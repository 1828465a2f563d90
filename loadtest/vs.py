"""squeezeserve against the simplest server a user could write on the same graph, paired.

    python -m loadtest.vs [--store DIR] [--workloads classify-32,ner-128,qa-1000,...]
        [--protocols rest,grpc] [--concurrency 1,16,64] [--rounds 6] [--seconds 6]
        [--env SQZ_X=1 ...] [--out DIR] [--docs docs/benchmarks.md]

Each workload names its model in the store: classify-N and mixed-* demo-classify, ner-N demo-ner,
qa-N demo-qa (a question and an N-token context: several windows per request). squeezeserve
(`serve`, every model, REST and gRPC in one process) and the naive servers (one process per model
and protocol: loadtest/naive_app.py for REST, loadtest/naive_grpc.py for gRPC, one ORT session
each and no batching, sharing the per-request code of loadtest/naive_model.py) run for the whole
round, with the same ORT thread count: every round starts fresh processes (warmed up with a
second of traffic per endpoint), since a process can keep a fast or a slow mode for its whole
life. REST cells are driven by wrk, gRPC cells by k6 (squeezeserve.v1.Inference), closed loop,
30 s per request for both; a cell starts only once every server is idle again (what the last
cell left in flight is finished). Every round measures every cell on both servers back to back,
the order rotating between rounds and cells, so the machine's fast and slow stretches (1.5-2x
here, for minutes) hit both alike; only the paired ratios say anything. Per cell the report
gives each server's median req/s and p99, the median paired ratio and its 95 % interval
(t-interval over the rounds' log ratios), and CPU seconds per request from /proc. qa-1000 at
64 callers (~6 req/s: ~10 s per request) wants cells of 30 s or more (a cell shorter than its p99
is marked).

The load generators run `--client-nice` (default 10) below the servers' priority. They share the
two cores with the servers, and the kernel divides CPU per thread: at equal priority k6 took the
cores from squeezeserve's two ORT threads (a thread waiting at an op's barrier stalls the other)
far more than from the naive server's dozens of threads, so the comparison measured whose thread
count won against the client (gRPC mixed-uniform c64: 0.89x at equal priority, 0.99x with k6 at
+15, same servers, alternated). A client on its own machine takes nothing from either server.
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from loadtest.k6 import Executor, run_k6
from loadtest.probes import process_cpu_s
from loadtest.protocols import k6_target
from loadtest.run import DEFAULT_CACHE, ensure_store
from loadtest.server import REPO, ServerProcess, free_port, http_status
from loadtest.workloads import (
    TextBuilder,
    Workload,
    classify_fixed,
    classify_spread,
    ner_fixed,
    qa_long_context,
    write_bodies,
)
from loadtest.wrk import LoadResult, run_wrk
from service.bench.report import replace_marked
from service.bench.timing import machine_details

START, END = "<!-- vs:start -->", "<!-- vs:end -->"
# t(0.975, n-1) for n = 2..12 rounds; more rounds use 2.2 (close enough for a report).
T975 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23, 11: 2.20}
WORKLOADS = ("classify-32", "classify-128", "mixed-uniform", "mixed-tail", "ner-128", "qa-1000")
PROTOCOLS = ("rest", "grpc")
MODELS = {"classify": "demo-classify", "mixed": "demo-classify", "ner": "demo-ner", "qa": "demo-qa"}
READY_TIMEOUT_S = 120.0
REQUEST_TIMEOUT_S = 30.0  # both load generators (squeezeserve's own request timeout)
IDLE_CORES = 0.1  # servers using less than this (all together) are idle
SETTLE_TIMEOUT_S = 60.0
WARM_UP_CALLERS, WARM_UP_S = 4, 1.0  # per endpoint, after each round's fresh start
CLIENT_NICE = 10  # the load generators' niceness above the servers' (see the module docstring)


def model_of(name: str) -> str:
    kind = name.partition("-")[0]
    if kind not in MODELS:
        raise SystemExit(f"unknown workload {name!r} (known: {', '.join(WORKLOADS)}; any N in classify-N etc.)")
    return MODELS[kind]


def workload(name: str, store: Path) -> Workload:
    model = model_of(name)
    builder = TextBuilder(store / model / "tokenizer.json")
    kind, _, size = name.partition("-")
    if kind == "mixed" and size in ("uniform", "tail"):
        return classify_spread(builder, model, size)
    if kind == "classify" and size.isdigit():
        return classify_fixed(builder, model, int(size))
    if kind == "ner" and size.isdigit():
        return ner_fixed(builder, model, int(size))
    if kind == "qa" and size.isdigit():
        return qa_long_context(builder, model, int(size))
    raise SystemExit(f"unknown workload {name!r} (known: {', '.join(WORKLOADS)}; any N in classify-N etc.)")


class NaiveServer:
    """One naive server (loadtest/naive_app.py under uvicorn, or loadtest/naive_grpc.py) for one
    store entry, on a free 127.0.0.1 port; a context manager."""

    def __init__(self, entry: Path, protocol: str, threads: int, log: Path) -> None:
        self.port = free_port()
        self.protocol = protocol
        self.http_url = f"http://127.0.0.1:{self.port}"
        self.grpc_target = f"127.0.0.1:{self.port}"
        env = {**os.environ, "SQZ_NAIVE_MODEL_DIR": str(entry), "SQZ_NAIVE_THREADS": str(threads)}
        if protocol == "rest":
            command = [sys.executable, "-m", "uvicorn", "loadtest.naive_app:app", "--host", "127.0.0.1"]
            command += ["--port", str(self.port), "--log-level", "warning"]
        else:
            command = [sys.executable, "-m", "loadtest.naive_grpc", "--port", str(self.port)]
        with open(log, "wb") as out:
            self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self._ready():
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"the naive {protocol} server for {entry.name} did not start (see {log})")
            time.sleep(0.2)

    def _ready(self) -> bool:
        if self.protocol == "rest":
            return http_status(self.http_url + "/readyz") == 200
        try:  # naive_grpc binds its port only once the model is loaded
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

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
                self.process.wait(10)

    def __enter__(self) -> NaiveServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@dataclass(frozen=True)
class Endpoint:
    """One server answering one workload on one protocol: what drives it, whose CPU to count."""

    pid: int
    send: Callable[[int, float], LoadResult]  # (callers, seconds) -> one bounded closed-loop run


def endpoint(
    pid: int, http_url: str, grpc_target: str, w: Workload, protocol: str, bodies: Path, out: Path, nice: int
) -> Endpoint:
    if protocol == "rest":
        return Endpoint(pid, lambda c, s: run_wrk(http_url + w.path, bodies, w.name, c, s, REQUEST_TIMEOUT_S, nice))
    target = k6_target("grpc-v1", w, http_url, grpc_target, out / "bodies")
    closed = Executor.closed_loop
    return Endpoint(pid, lambda c, s: run_k6(target, w.name, closed(c), s, timeout_s=REQUEST_TIMEOUT_S, nice=nice))


@dataclass
class Side:
    rps: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    errors: int = 0


def settle(pids: list[int]) -> float:
    """Waits (at most SETTLE_TIMEOUT_S) until the servers are idle; returns the seconds waited.

    wrk stops with requests in flight: squeezeserve cancels those, the naive app's `def`
    endpoints finish them, and that work must not land in the next cell's measurement.
    """
    started = time.monotonic()
    while time.monotonic() - started < SETTLE_TIMEOUT_S:
        before = sum(process_cpu_s(pid) for pid in pids)
        time.sleep(0.25)
        if sum(process_cpu_s(pid) for pid in pids) - before < IDLE_CORES * 0.25:
            break
    return time.monotonic() - started


def measure(target: Endpoint, concurrency: int, seconds: float, side: Side) -> None:
    cpu = process_cpu_s(target.pid)
    result = target.send(concurrency, seconds)
    used = process_cpu_s(target.pid) - cpu
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


Cell = tuple[str, str, int]  # workload, protocol, callers


def render(cells: dict[Cell, tuple[Side, Side]], descriptions: dict[str, str], args: argparse.Namespace) -> str:
    lines = [
        "| workload | protocol | callers | squeezeserve req/s | naive req/s | ratio (median) | 95 % interval | "
        "p99 ms (ours / naive) | CPU ms per request (ours / naive) |",
        "|---|---|---:|---:|---:|---:|---|---|---|",
    ]
    for (name, protocol, concurrency), (ours, naive) in cells.items():
        ratio, low, high = interval([a / b for a, b in zip(ours.rps, naive.rps)])
        p99 = f"{statistics.median(ours.p99):.0f} / {statistics.median(naive.p99):.0f}"
        cpu = f"{statistics.median(ours.cpu_ms):.1f} / {statistics.median(naive.cpu_ms):.1f}"
        errors = f" ({ours.errors}/{naive.errors} errors)" if ours.errors or naive.errors else ""
        errors += " †" if max(ours.p99 + naive.p99) > 1000 * args.seconds else ""
        lines.append(
            f"| {name} | {protocol} | {concurrency} | {statistics.median(ours.rps):.1f} | "
            f"{statistics.median(naive.rps):.1f} | **{ratio:.2f}x** | {low:.2f}-{high:.2f} | {p99} | {cpu}{errors} |"
        )
    lines.append("")
    lines += [f"- `{name}`: {text}" for name, text in descriptions.items()]
    command = "python -m loadtest.vs " + " ".join(sys.argv[1:])
    lines.append("- rest: wrk; grpc: k6 (squeezeserve.v1.Inference); closed loop, one caller per connection")
    if any("†" in line for line in lines):
        lines.append("- †: a p99 longer than the cell: few answers per caller, a loose figure (raise --seconds)")
    lines.append(
        f"- {args.rounds} rounds x {args.seconds:g} s per cell and server, order rotated, fresh processes every"
        f" round; load generators at"
        f" niceness +{args.client_nice} relative to the servers; `{command}`"
    )
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", type=Path, help="model store (default: the demo store in the cache)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    p.add_argument("--protocols", default=",".join(PROTOCOLS))
    p.add_argument("--concurrency", default="1,16,64")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--threads", type=int, default=2, help="ORT intra-op threads for both servers")
    p.add_argument("--client-nice", type=int, default=CLIENT_NICE, help="load generators' niceness above the servers'")
    p.add_argument("--env", action="append", default=[], help="SQZ_X=value for squeezeserve (repeat)")
    p.add_argument("--out", type=Path, default=Path("/tmp/squeezeserve-vs"))
    p.add_argument("--docs", type=Path, help="also write the table into this file between the vs markers")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    store = ensure_store(args.store, args.cache)
    names = args.workloads.split(",")
    protocols = args.protocols.split(",")
    if not protocols or not set(protocols) <= set(PROTOCOLS):
        raise SystemExit(f"--protocols takes {', '.join(PROTOCOLS)}; got {args.protocols!r}")
    loads = {name: workload(name, store) for name in names}
    bodies = {name: write_bodies(w, args.out) for name, w in loads.items()}
    concurrency = [int(c) for c in args.concurrency.split(",")]
    env = {"SQZ_INTRA_OP_THREADS": str(args.threads)}
    for pair in args.env:
        key, _, value = pair.partition("=")
        env[key] = value
    cells = {(n, p, c): (Side(), Side()) for n in names for p in protocols for c in concurrency}
    print(f"{len(cells)} cells x 2 servers x {args.rounds} rounds x {args.seconds:g} s", flush=True)
    nice = args.client_nice
    for r in range(args.rounds):
        # Fresh processes every round: on this VM a process can keep a fast or a slow mode for its
        # whole life, so servers that lived through the whole comparison made one draw of those
        # modes decide every round alike (the same cell moved by 0.15x between whole runs, each
        # with a tight interval). Restarted, the draws vary between rounds and show in the interval.
        with ExitStack() as stack:
            naive = {
                (model, p): stack.enter_context(
                    NaiveServer(store / model, p, args.threads, args.out / f"naive-{model}-{p}-r{r + 1}.log")
                )
                for model in sorted({model_of(n) for n in names})
                for p in protocols
            }
            ours = stack.enter_context(ServerProcess(store, env=env, log_path=args.out / f"squeezeserve-r{r + 1}.log"))
            targets = {
                (n, p): (
                    endpoint(ours.pid, ours.http_url, ours.grpc_target, w, p, bodies[n], args.out, nice),
                    endpoint(
                        (s := naive[model_of(n), p]).pid, s.http_url, s.grpc_target, w, p, bodies[n], args.out, nice
                    ),
                )
                for n, w in loads.items()
                for p in protocols
            }
            pids = [ours.pid, *(s.pid for s in naive.values())]
            for pair in targets.values():  # first requests of a fresh process: not measured
                for target in pair:
                    target.send(WARM_UP_CALLERS, WARM_UP_S)
            waited = 0.0
            for k, ((name, protocol, c), (mine, theirs)) in enumerate(cells.items()):
                us, them = targets[name, protocol]
                order = [(us, mine), (them, theirs)]
                for target, side in order[(r + k) % 2 :] + order[: (r + k) % 2]:
                    waited += settle(pids)
                    measure(target, c, args.seconds, side)
        print(f"round {r + 1}/{args.rounds} done ({waited:.1f} s waiting for idle servers)", flush=True)
    descriptions = {n: f"{w.description} ({model_of(n)})" for n, w in loads.items()}
    text = render(cells, descriptions, args)
    print(text)
    (args.out / "vs.md").write_text(text)
    if args.docs:
        block = f"{START}\n### squeezeserve vs the naive server on the same graph (loadtest/vs.py)\n\n"
        block += f"Machine: {machine_details()}\n\n{text}{END}\n"
        replace_marked(args.docs, START, END, block)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
