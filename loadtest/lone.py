"""A lone caller against the raw graph, interleaved: client p50 minus batch-1 `session.run`.

    python -m loadtest.lone [--store STORE] [--workloads classify-32,classify-128] [--rounds 8]
        [--seconds 3] [--out DIR] [--baseline DIR | --idle-poll]

The bound it checks (issue 11): a single client's p50 at most the raw batch-1 `session.run` + 1 ms.
This VM changes speed for minutes at a time and a process can keep a slow mode for its whole life,
so a raw figure taken once (or the better of two fresh processes) and a server measured later say
little. Here one raw process and one server live for the whole run and are measured in
alternation, block by block, order rotated:

- raw: a long-lived process with the server's own session factory and options
  (service.runtime.session.create_session) on the store entry's graph, running the workload's own
  texts (tokenized by the server's task code) one row per run, back to back; the block's median;
- served: wrk, one connection, closed loop, the same texts over REST; the cell's p50, and the
  server's own `session.run` time per batch from /metrics (in-server ORT).

Per round: gap = served p50 - raw median. Reported: every round, the median gap with a 95 %
t-interval, and the served p50 minus the in-server ORT time (what serving adds around the run).
Writes OUT/lone.md.

--baseline DIR also serves another checkout (`git worktree add DIR COMMIT`) in the same rounds
(raw, this server and the baseline's, order rotated): the report adds the baseline's gap and,
round by round, the difference between what each server adds around its own run (p50 minus its
in-server ORT time: each process keeps its own speed mode), with its interval. Changes of
~0.2 ms show there; between two runs of this tool the machine's mode moves the gap more.

--idle-poll measures this server a second time in each round (in place of a baseline) while the
tool holds /dev/cpu_dma_latency at 0 (root only): for as long as it is held, the kernel keeps idle
CPUs polling instead of halting them, so a wake-up on the lone caller's path (the loop, the
batch's worker thread, ORT's pool thread) never waits for a halted (virtual) CPU. The paired
difference then says what those wake-ups cost the lone caller on this machine.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shlex
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from loadtest.cells import wrk_cell
from loadtest.run import DEFAULT_CACHE, ensure_store
from loadtest.server import ServerProcess
from loadtest.vs import T975, model_of, workload
from loadtest.workloads import write_bodies
from loadtest.workloads.bodies import texts_of

BOUND_MS = 1.0


def raw_worker(entry: Path, bodies: Path) -> None:
    """The raw side, in its own process: reads a run count per line, answers the block's median ms."""
    from loadtest.naive_model import NaiveModel
    from service.runtime.session import create_session
    from service.tasks.base import ClassifyParams, TextInput

    model = NaiveModel(entry, threads=1)  # its task code and layout; the session is the server's
    session = create_session(entry / model.manifest.graph_file)
    params = ClassifyParams()  # the classify-N workloads: one text per request
    texts = texts_of(bodies.read_text(encoding="utf-8").splitlines())  # classify-N: one text per request
    feeds = [model.feeds(model.handler.preprocess([TextInput(text)], params)) for text in texts]
    for _ in range(20):
        session.run(None, feeds[0])
    print("ready", flush=True)
    for command in sys.stdin:
        times = []
        for i in range(int(command)):
            started = time.perf_counter()
            session.run(None, feeds[i % len(feeds)])
            times.append((time.perf_counter() - started) * 1000)
        print(f"{statistics.median(times):.4f}", flush=True)


class RawProcess:
    def __init__(self, entry: Path, bodies: Path) -> None:
        command = [sys.executable, "-m", "loadtest.lone", "--raw-worker", str(entry), str(bodies)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None and self.process.stdout.readline().strip() == "ready"

    def block(self, runs: int) -> float:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{runs}\n")
        self.process.stdin.flush()
        return float(self.process.stdout.readline())

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)


@contextlib.contextmanager
def idle_cpus_polling() -> Iterator[None]:
    """Holds a PM QoS request of 0 us wake-up latency: idle CPUs poll until it is released."""
    fd = os.open("/dev/cpu_dma_latency", os.O_WRONLY)
    try:
        os.write(fd, struct.pack("i", 0))
        yield
    finally:
        os.close(fd)


def t_interval(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    half = T975.get(len(values) - 1, 2.2) * statistics.stdev(values) / math.sqrt(len(values))
    mean = statistics.fmean(values)
    return mean - half, mean + half


def measure(
    store: Path,
    name: str,
    rounds: int,
    seconds: float,
    out: Path,
    baseline: Path | None = None,
    idle_poll: bool = False,
) -> list[str]:
    if not name.startswith("classify-"):
        raise SystemExit(f"{name!r}: loadtest.lone runs the classify-N workloads")
    load = workload(name, store)
    bodies = write_bodies(load, out / "bodies")
    entry = store / model_of(name)
    # Per round: the raw median, then (served p50, in-server ORT per batch) for this server and
    # the baseline's (with --idle-poll: this server again, idle CPUs polling).
    rows: list[tuple[float, tuple[float, float], tuple[float, float] | None]] = []
    raw = RawProcess(entry, bodies)
    try:
        with contextlib.ExitStack() as stack:
            servers = {"this": stack.enter_context(ServerProcess(store))}
            if baseline is not None:
                servers["baseline"] = stack.enter_context(ServerProcess(store, repo=baseline))
            for server in servers.values():
                wrk_cell(server, load, bodies, 1, 2.0)  # warm-up
            runs = max(50, int(seconds * 1000 / max(raw.block(20), 0.5)))
            # Each served side: the server it calls and what holds while it is measured.
            sides: dict[str, tuple[ServerProcess, Callable[[], contextlib.AbstractContextManager[None]]]]
            sides = {side: (server, contextlib.nullcontext) for side, server in servers.items()}
            if idle_poll:
                sides["baseline"] = (servers["this"], idle_cpus_polling)
            order = ["raw", *sides]
            for round_no in range(rounds):
                shift = round_no % len(order)
                raw_ms, cells = 0.0, {}
                for side in order[shift:] + order[:shift]:
                    if side == "raw":
                        raw_ms = raw.block(runs)
                    else:
                        server, holding = sides[side]
                        with holding():
                            cell = wrk_cell(server, load, bodies, 1, seconds)
                        cells[side] = (cell.result.p50_ms, cell.server.ort_ms_per_batch)
                rows.append((raw_ms, cells["this"], cells.get("baseline")))
                report = ", ".join(f"{side} p50 {p50:.2f} ms (ORT {ort:.2f})" for side, (p50, ort) in cells.items())
                print(f"{name} round {round_no + 1}: raw {raw_ms:.2f} ms, {report}", flush=True)
    finally:
        raw.close()
    gaps = [served - raw_ms for raw_ms, (served, _), _ in rows]
    low, high = t_interval(gaps)
    around = statistics.median(served - ort for _, (served, ort), _ in rows)
    median = statistics.median(gaps)
    lines = [f"**{name}** ({load.description}):", ""]
    header = "| round | raw batch-1 run ms | served p50 ms | gap ms | in-server ORT ms |"
    rule = "|---:|---:|---:|---:|---:|"
    compared = baseline is not None or idle_poll  # a second served side, paired by round
    label = "idle polling" if idle_poll else "baseline"
    if compared:
        header += f" {label} p50 ms | {label} gap ms | {label} ORT ms | around the run: this - {label} ms |"
        rule += "---:|---:|---:|---:|"
    lines += [header, rule]
    for i, (raw_ms, (served, ort), base) in enumerate(rows, 1):
        line = f"| {i} | {raw_ms:.2f} | {served:.2f} | {served - raw_ms:+.2f} | {ort:.2f} |"
        if base is not None:
            paired = (served - ort) - (base[0] - base[1])
            line += f" {base[0]:.2f} | {base[0] - raw_ms:+.2f} | {base[1]:.2f} | {paired:+.2f} |"
        lines.append(line)
    verdict = "met" if median <= BOUND_MS else "not met"
    lines += [
        "",
        f"Gap, median over {len(rows)} rounds: **{median:+.2f} ms** (95 % interval of the mean {low:+.2f} to "
        f"{high:+.2f}; bound ≤ +{BOUND_MS:.0f} ms: {verdict}). Served p50 minus the in-server run: {around:+.2f} ms.",
    ]
    if compared:
        # Each server's p50 minus its own in-server run: what the code adds around the run, free of
        # the speed mode each process keeps (ORT per batch can differ 1.5x between two servers).
        base_gaps = [base[0] - raw_ms for raw_ms, _, base in rows if base is not None]
        diffs = [(served - ort) - (base[0] - base[1]) for _, (served, ort), base in rows if base is not None]
        d_low, d_high = t_interval(diffs)
        other = "The same server with idle CPUs polling" if idle_poll else f"Baseline `{baseline}`"
        lines.append(
            f"{other}: gap median {statistics.median(base_gaps):+.2f} ms. Around the run (p50 minus "
            f"the server's own run), this server minus the {label}, paired by round: median "
            f"**{statistics.median(diffs):+.2f} ms** (95 % interval of the mean {d_low:+.2f} to {d_high:+.2f})."
        )
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--raw-worker"]:
        raw_worker(Path(argv[1]), Path(argv[2]))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", type=Path)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--workloads", default="classify-32,classify-128")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--out", type=Path, default=Path("/tmp/squeezeserve-lone"))
    p.add_argument("--baseline", type=Path, help="another checkout to serve in the same rounds")
    p.add_argument(
        "--idle-poll", action="store_true", help="measure this server again with idle CPUs polling (needs root)"
    )
    args = p.parse_args(argv)
    if args.idle_poll and args.baseline is not None:
        raise SystemExit("--idle-poll takes the baseline's place: give one or the other")
    if not 2 <= args.rounds <= 40 or not 0.5 <= args.seconds <= 30:
        raise SystemExit("--rounds must be 2..40 and --seconds 0.5..30 (bounded runs only)")
    store = ensure_store(args.store, args.cache)
    args.out.mkdir(parents=True, exist_ok=True)
    lines = [f"Reproduce: `python -m loadtest.lone {shlex.join(argv)}`", ""]
    for name in args.workloads.split(","):
        lines += measure(store, name, args.rounds, args.seconds, args.out, args.baseline, args.idle_poll)
    text = "\n".join(lines)
    (args.out / "lone.md").write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
