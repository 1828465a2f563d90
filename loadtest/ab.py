"""Paired A/B of server settings: all variants alive at once, short wrk cells interleaved in rounds.

    python -m loadtest.ab --variant default= --variant nodelay=SQZ_MAX_BATCH_DELAY_MS=0 \
        [--workload classify-32] [--concurrency 1,16] [--rounds 5] [--seconds 5] [--replicas 2] [--out DIR]
    python -m loadtest.ab --variant before= --tree before=/tmp/before --variant after= ...

--tree LABEL=DIR runs that variant's servers from another checkout (`git worktree add /tmp/before
COMMIT`): two commits compared in the same paired rounds.

wrk runs `--client-nice` (default 10) below the servers, as in `loadtest.vs` (whose docstring says
why); reports made before that flag existed ran it at the servers' priority.

This machine's throughput drifts by tens of percent between minutes, so comparing two runs made
one after the other says little. Here every variant's server runs for the whole comparison (an
idle server costs nothing), and each round measures every variant once, in a rotated order, so
drift hits all of them alike. The report gives per-variant medians over the rounds and each
round's ratio to the first variant (the median of those paired ratios is the figure to quote).

--replicas N starts N servers per variant: on this VM two servers with identical settings can
differ by 1.4x for minutes (ORT per batch), a per-process mode that would otherwise pass for
an effect of the setting. Each replica is measured every round; a variant's figure per round is
the mean over its replicas.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from loadtest.cells import wrk_cell
from loadtest.report import Cell
from loadtest.run import DEFAULT_CACHE, ensure_store
from loadtest.server import REPO, ServerProcess
from loadtest.vs import CLIENT_NICE
from loadtest.workloads import TextBuilder, Workload, classify_fixed, classify_mixed, classify_spread, write_bodies
from loadtest.wrk import run_wrk


@dataclass
class Series:
    label: str
    env: dict[str, str]
    rps: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    ort_ms: list[float] = field(default_factory=list)
    rows: list[float] = field(default_factory=list)
    errors: int = 0


def add_round(series: Series, cells: list[Cell]) -> None:
    """One round of one variant: the mean over its replicas."""
    series.rps.append(statistics.fmean(c.result.rps for c in cells))
    series.p50.append(statistics.fmean(c.result.p50_ms for c in cells))
    series.p99.append(statistics.fmean(c.result.p99_ms for c in cells))
    series.ort_ms.append(statistics.fmean(c.server.ort_ms_per_batch for c in cells))
    series.rows.append(statistics.fmean(c.server.rows_per_batch for c in cells))
    series.errors += sum(c.result.errors for c in cells)


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """`label=SQZ_A=1,SQZ_B=2` (or `label=` for the defaults)."""
    label, _, rest = text.partition("=")
    env: dict[str, str] = {}
    for pair in filter(None, rest.split(",")):
        key, sep, value = pair.partition("=")
        if not sep or not key.startswith("SQZ_"):
            raise SystemExit(f"--variant takes label=SQZ_NAME=value[,...], got {text!r}")
        env[key] = value
    if not label:
        raise SystemExit(f"--variant needs a label: {text!r}")
    return label, env


def make_workload(name: str, store: Path, model: str) -> Workload:
    builder = TextBuilder(store / model / "tokenizer.json")
    if name == "classify-mixed":
        return classify_mixed(builder, model)
    if name in ("mixed-uniform", "mixed-tail"):
        return classify_spread(builder, model, name.removeprefix("mixed-"))
    if name.startswith("classify-"):
        return classify_fixed(builder, model, int(name.removeprefix("classify-")))
    raise SystemExit(f"unknown workload {name!r} (classify-N, classify-mixed, mixed-uniform, mixed-tail)")


def ratio_line(series: list[Series], attr: str) -> list[str]:
    base = getattr(series[0], attr)
    out = []
    for s in series[1:]:
        paired = [b and v / b for v, b in zip(getattr(s, attr), base, strict=False)]
        rounds = ", ".join(f"{r:.2f}" for r in paired)
        out.append(f"{s.label}/{series[0].label} = {statistics.median(paired):.2f}x (rounds: {rounds})")
    return out


def render(command: str, workload: Workload, by_level: dict[int, list[Series]], seconds: float, nice: int) -> str:
    lines = [f"Reproduce: `{command}`", ""]
    lines += [f"Workload `{workload.name}`: {workload.description}; {seconds:g} s cells; wrk at niceness +{nice}.", ""]
    for level, series in by_level.items():
        lines += [f"Concurrency {level} (medians over {len(series[0].rps)} rounds):", ""]
        lines += ["| variant | settings | req/s | p50 ms | p99 ms | ORT ms/batch | rows/batch | errors |"]
        lines += ["|---|---|---:|---:|---:|---:|---:|---:|"]
        for s in series:
            settings = ", ".join(f"`{k}={v}`" for k, v in s.env.items()) or "defaults"
            lines.append(
                f"| {s.label} | {settings} | {statistics.median(s.rps):.1f} | {statistics.median(s.p50):.1f} "
                f"| {statistics.median(s.p99):.1f} | {statistics.median(s.ort_ms):.1f} "
                f"| {statistics.median(s.rows):.1f} | {s.errors} |"
            )
        lines += ["", "Paired per-round ratios, throughput: " + "; ".join(ratio_line(series, "rps"))]
        lines += ["Paired per-round ratios, p50: " + "; ".join(ratio_line(series, "p50")), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", action="append", required=True, help="label=SQZ_NAME=value[,...] (repeat)")
    p.add_argument("--tree", action="append", default=[], help="label=DIR: serve that variant from another checkout")
    p.add_argument("--store", type=Path)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--model", default="demo-classify")
    p.add_argument("--workload", default="classify-32")
    p.add_argument("--concurrency", default="1,16")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--replicas", type=int, default=1, help="servers per variant (see above)")
    p.add_argument("--client-nice", type=int, default=CLIENT_NICE, help="wrk's niceness above the servers'")
    p.add_argument("--out", type=Path, default=Path("loadtest/results"))
    args = p.parse_args(argv)
    if not 1 <= args.rounds <= 50 or args.seconds > 60 or not 1 <= args.replicas <= 4:
        raise SystemExit("--rounds must be 1..50, --replicas 1..4, --seconds at most 60 (bounded runs only)")
    variants = [parse_variant(v) for v in args.variant]
    trees = dict(t.split("=", 1) for t in args.tree)
    if set(trees) - {label for label, _ in variants}:
        raise SystemExit(f"--tree names a label that no --variant has: {sorted(trees)}")
    store = ensure_store(args.store, args.cache)
    workload = make_workload(args.workload, store, args.model)
    bodies = write_bodies(workload, args.out / "bodies")
    levels = [int(c) for c in args.concurrency.split(",")]
    by_level = {level: [Series(label, env) for label, env in variants] for level in levels}
    with contextlib.ExitStack() as stack:
        # SQZ_STORE_DIR in a variant serves another store (e.g. the same checkpoint exported
        # with --layout padded); everything else comes from --store.
        servers = [
            [
                stack.enter_context(
                    ServerProcess(Path(env.get("SQZ_STORE_DIR", store)), env=env, repo=Path(trees.get(label, REPO)))
                )
                for _ in range(args.replicas)
            ]
            for label, env in variants
        ]
        for server in (s for group in servers for s in group):
            run_wrk(server.http_url + workload.path, bodies, workload.name, 4, 3.0, nice=args.client_nice)  # warm-up
        for round_no in range(args.rounds):
            for level in levels:
                order = list(range(len(servers)))
                order = order[round_no % len(order) :] + order[: round_no % len(order)]
                for i in order:
                    cells = []
                    for server in servers[i]:
                        time.sleep(0.5)  # let the previous cell's spinning threads settle
                        cells.append(wrk_cell(server, workload, bodies, level, args.seconds, args.client_nice))
                    add_round(by_level[level][i], cells)
                    s = by_level[level][i]
                    print(f"round {round_no + 1} c{level} {s.label}: {s.rps[-1]:.1f} req/s "
                          f"p50 {s.p50[-1]:.1f} ms ORT {s.ort_ms[-1]:.1f} ms", flush=True)  # fmt: skip
    command = "python -m loadtest.ab " + shlex.join(argv if argv is not None else sys.argv[1:])
    text = render(command, workload, by_level, args.seconds, args.client_nice)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ab.md").write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
