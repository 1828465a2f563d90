"""Overload: offer twice the capacity, with clients that honour Retry-After, and check the shedding.

    python -m loadtest.overload [--capacity REQ_PER_S] [--seconds 20] [--max-queued-rows 64]
        [--protocols rest-v1,grpc-v1] [--out loadtest/results]

Starts the server (small queue, so overload happens on 2 cores), measures each protocol's capacity
with a short closed loop (unless --capacity), then per protocol runs two bounded k6 scenarios on
1-text, 32-token /v1 classify requests:
- open loop: 2x capacity arrivals/s; a VU refused with 429 / RESOURCE_EXHAUSTED sleeps the
  Retry-After (header / trailing metadata) before its next request, while new arrivals keep coming;
- closed loop: 4x the VUs that saturate the server, each sleeping Retry-After after a refusal.
Checks: only 200 / 429 (OK / RESOURCE_EXHAUSTED), every refusal carried Retry-After, accepted p99
within the queue bound, goodput near capacity, /metrics request counters equal the client's. Writes
OUT/overload.md; exits 1 if a check failed.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from loadtest.cells import Planned, k6_cell
from loadtest.k6 import Executor
from loadtest.overload_checks import TRANSPORTS, Limits, Scenario, counts_delta, render, run_checks
from loadtest.probes import request_counts
from loadtest.protocols import parse_protocols
from loadtest.run import DEFAULT_CACHE, ensure_store
from loadtest.server import ServerProcess
from loadtest.workloads import TextBuilder, classify_fixed, write_bodies
from service.bench.timing import machine_details

MODEL = "demo-classify"
TOKENS = 32


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", type=Path)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--protocols", default="rest-v1,grpc-v1")
    p.add_argument("--capacity", type=float, help="req/s the server sustains (default: measure per protocol)")
    p.add_argument("--capacity-seconds", type=float, default=5.0)
    # 64 callers fill a batch of 32 while the previous one runs, without reaching the queue bound.
    p.add_argument("--saturate-vus", type=int, default=64, help="closed-loop callers that saturate the server")
    p.add_argument("--seconds", type=float, default=20.0, help="per overload scenario")
    p.add_argument("--overload-factor", type=float, default=2.0, help="open loop: arrivals = factor x capacity")
    p.add_argument("--closed-factor", type=int, default=4, help="closed loop: VUs = factor x --saturate-vus")
    p.add_argument("--max-vus", type=int, help="open loop VUs (default: 1.5 s of arrivals, refused VUs sleep)")
    p.add_argument("--max-queued-rows", type=int, default=64)
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--min-goodput-share", type=float, default=0.7, help="goodput floor, share of capacity")
    p.add_argument("--out", type=Path, default=Path("loadtest/results"))
    return p


def measure_capacity(server: ServerProcess, planned: Planned, protocol: str, args: argparse.Namespace) -> float:
    """Accepted req/s of a short closed loop at --saturate-vus (after a 2 s warm-up)."""
    k6_cell(server, planned, protocol, Executor.closed_loop(4), 2.0)
    cell = k6_cell(server, planned, protocol, Executor.closed_loop(args.saturate_vus), args.capacity_seconds)
    if cell.result.errors:
        print(f"capacity run had {cell.result.errors} errors: {cell.result.statuses}", flush=True)
    return cell.result.goodput


def run_scenario(
    server: ServerProcess, planned: Planned, protocol: str, executor: Executor, capacity: float, seconds: float
) -> Scenario:
    transport = TRANSPORTS[protocol.split("-")[0]]
    before = request_counts(server.http_url)
    cell = k6_cell(server, planned, protocol, executor, seconds, honour_retry_after=True)
    counts = counts_delta(before, request_counts(server.http_url), transport)
    label = f"{protocol} {cell.result.load}"
    r = cell.result
    print(f"{label}: {r.statuses}, accepted p99 {r.ok_p99_ms or 0:.0f} ms, goodput {r.goodput:.1f}", flush=True)
    return Scenario(label, cell, capacity, counts)


def scenarios_for(
    server: ServerProcess, planned: Planned, protocol: str, capacity: float, args: argparse.Namespace
) -> list[Scenario]:
    rate = args.overload_factor * capacity
    max_vus = args.max_vus or max(32, min(1024, round(rate * 1.5)))
    executors = (Executor.open_loop(rate, max_vus), Executor.closed_loop(args.closed_factor * args.saturate_vus))
    return [run_scenario(server, planned, protocol, e, capacity, args.seconds) for e in executors]


def intro(args: argparse.Namespace, env: dict[str, str], capacities: dict[str, float], limits: Limits) -> list[str]:
    m = machine_details()
    settings = ", ".join(f"`{k}={v}`" for k, v in env.items())
    how = (
        "given (--capacity)"
        if args.capacity
        else f"k6 closed loop, {args.saturate_vus} VUs, {args.capacity_seconds:g} s"
    )
    measured = ", ".join(f"{p} {c:.1f} req/s" for p, c in capacities.items())
    return [
        f"Machine: {m['cpu']}, {m['cores']} cores, onnxruntime {m['onnxruntime']}. Server on 127.0.0.1 with "
        f"{settings} (other settings default). Workload: 1 text of {TOKENS} tokens per /v1 classify request "
        "(the same texts over REST and gRPC). Clients: k6 on the same 2 cores, request timeout 10 s; after a "
        "429 / RESOURCE_EXHAUSTED a VU sleeps the Retry-After seconds (header / `retry-after` trailing "
        "metadata) before its next request (cut at the end of the run).",
        "",
        f"Capacity ({how}): {measured}. Scenarios, {args.seconds:g} s each: open loop at "
        f"{args.overload_factor:g}x capacity (constant-arrival-rate; arrivals keep coming while refused VUs "
        f"sleep; `dropped` = arrivals with no free VU), and closed loop with {args.closed_factor}x "
        f"{args.saturate_vus} VUs.",
        "",
        "Latency bound checked on accepted requests: p99 <= (max_queued_rows + 2 x max_batch_size) / "
        f"drain rate = ({limits.max_queued_rows} + 2 x {limits.max_batch_size}) rows / the scenario's goodput "
        "(one row per request): a full queue ahead, the batch already running, and the request's own batch, "
        "at the pace the server kept while refusing; the goodput check (floor "
        f"{limits.min_goodput_share:.0%} of capacity) keeps that pace near capacity.",
        "",
        "Columns: accepted / refused = 200 / 429 (REST) or OK / RESOURCE_EXHAUSTED (gRPC); latency is of the "
        "accepted requests; client / server CPU = CPU seconds per wall second (200 % = both cores); rows/batch, "
        "ORT ms/batch and queue wait (mean per row) come from the server's `/metrics` over the scenario.",
    ]


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    protocols = parse_protocols(args.protocols)
    store = ensure_store(args.store, args.cache)
    workload = classify_fixed(TextBuilder(store / MODEL / "tokenizer.json"), MODEL, TOKENS)
    planned = Planned(workload, [], write_bodies(workload, args.out / "bodies"), args.out / "bodies")
    env = {"SQZ_MAX_QUEUED_ROWS": str(args.max_queued_rows), "SQZ_MAX_BATCH_SIZE": str(args.max_batch_size)}
    limits = Limits(args.max_queued_rows, args.max_batch_size, args.min_goodput_share)
    capacities: dict[str, float] = {}
    scenarios: list[Scenario] = []
    with ServerProcess(store, env=env, log_path=args.out / "overload_server.log") as server:
        for protocol in protocols:
            capacities[protocol] = args.capacity or measure_capacity(server, planned, protocol, args)
            print(f"{protocol} capacity {capacities[protocol]:.1f} req/s", flush=True)
            scenarios += scenarios_for(server, planned, protocol, capacities[protocol], args)
    for scenario in scenarios:
        run_checks(scenario, limits)
    command = " ".join(["python -m loadtest.overload", shlex.join(argv if argv is not None else sys.argv[1:])]).strip()
    text = render(command, intro(args, env, capacities, limits), scenarios, limits)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "overload.md").write_text(text, encoding="utf-8")
    print(text)
    return 0 if all(s.passed for s in scenarios) else 1


if __name__ == "__main__":
    sys.exit(main())
