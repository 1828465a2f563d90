"""One measured cell: a bounded load run plus what the server did meanwhile (/metrics, CPU).

rest-v1 closed loop goes through wrk (the lighter client); every other protocol, and every open
loop, through k6 with the same texts (loadtest/protocols.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from loadtest.k6 import Executor, run_k6
from loadtest.probes import process_cpu_s, scrape, server_side
from loadtest.protocols import k6_target
from loadtest.report import Cell
from loadtest.server import ServerProcess
from loadtest.workloads import Workload
from loadtest.wrk import LoadResult, run_wrk


@dataclass(frozen=True)
class Planned:
    """A workload, its closed-loop levels, and its request files (wrk's JSONL; k6's per protocol)."""

    workload: Workload
    levels: list[int]
    bodies: Path  # one JSON body per line, for wrk
    requests_dir: Path  # where k6 request files are written


def measured(server: ServerProcess, run: Callable[[], LoadResult]) -> Cell:
    """Runs `run` between two /metrics scrapes and two reads of the server's CPU time."""
    before, cpu_before = scrape(server.http_url), process_cpu_s(server.pid)
    result = run()
    cpu = process_cpu_s(server.pid) - cpu_before
    return Cell(result, server_side(before, scrape(server.http_url), cpu, result.seconds))


def wrk_cell(
    server: ServerProcess, workload: Workload, bodies: Path, concurrency: int, seconds: float, nice: int = 0
) -> Cell:
    """`nice` > 0 runs wrk that much below this process's priority (loadtest.vs explains why)."""
    url = server.http_url + workload.path
    return measured(server, lambda: run_wrk(url, bodies, workload.name, concurrency, seconds, nice=nice))


def k6_cell(
    server: ServerProcess,
    planned: Planned,
    protocol: str,
    executor: Executor,
    seconds: float,
    honour_retry_after: bool = False,
) -> Cell:
    workload = planned.workload
    target = k6_target(protocol, workload, server.http_url, server.grpc_target, planned.requests_dir)
    return measured(server, lambda: run_k6(target, workload.name, executor, seconds, honour_retry_after))


def closed_cell(server: ServerProcess, planned: Planned, protocol: str, vus: int, seconds: float) -> Cell:
    if protocol == "rest-v1":
        return wrk_cell(server, planned.workload, planned.bodies, vus, seconds)
    return k6_cell(server, planned, protocol, Executor.closed_loop(vus), seconds)


def open_cell(
    server: ServerProcess, planned: Planned, protocol: str, rate: float, seconds: float, max_vus: int | None = None
) -> Cell:
    return k6_cell(server, planned, protocol, Executor.open_loop(rate, max_vus), seconds)


def warm_up(server: ServerProcess, planned: Planned, protocol: str, seconds: float) -> None:
    """A short closed-loop run (4 callers) whose numbers are thrown away."""
    if seconds > 0:
        closed_cell(server, planned, protocol, 4, seconds)
