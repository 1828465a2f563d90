"""One bounded closed-loop wrk run (N connections = N callers), with the client's own CPU time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

LUA = Path(__file__).resolve().parent / "post_bodies.lua"


@dataclass(frozen=True)
class LoadResult:
    workload: str
    concurrency: int
    seconds: float
    requests: int
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    client_cpu_s: float  # user + sys of the load generator
    # Filled by loadtest/k6.py (wrk leaves the defaults): wire protocol, open-loop arrival rate,
    # responses per status, and latency of the accepted (200 / OK) requests alone.
    protocol: str = "rest-v1"
    offered_rps: float | None = None  # open loop (constant arrival rate); None: closed loop
    dropped_iterations: int = 0  # open loop: arrivals k6 could not start (no free VU)
    overloaded: int = 0  # 429 / RESOURCE_EXHAUSTED responses (counted in errors too)
    missing_retry_after: int = 0  # overload refusals without a usable Retry-After / retry-after
    retry_after_s: tuple[float, float] | None = None  # (median, max) of the Retry-After values seen
    statuses: dict[str, int] = field(default_factory=dict)  # "200", "429", "0" (no response), "OK", ...
    ok_p50_ms: float | None = None
    ok_p95_ms: float | None = None
    ok_p99_ms: float | None = None

    @property
    def load(self) -> str:
        """The load model: `closed c16` (N callers) or `open 200 req/s` (arrival rate)."""
        if self.offered_rps is None:
            return f"closed c{self.concurrency}"
        return f"open {self.offered_rps:g} req/s"

    @property
    def goodput(self) -> float:
        """Accepted (non-error) responses per second."""
        return (self.requests - self.errors) / self.seconds if self.seconds else 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: str
    stderr: str
    cpu_s: float  # user + sys of that process alone
    killed: bool


def run_bounded(command: list[str], limit_s: float, env: dict[str, str] | None = None, nice: int = 0) -> Finished:
    """Runs a load generator to completion, killing it after `limit_s`; reports its own CPU time.

    nice > 0 runs it that much below this process's priority (`nice` execs it: same process, so
    its CPU time is still its own).
    """
    if nice:
        command = ["nice", "-n", str(nice), *command]
    # Output goes to files, not pipes: a chatty generator (k6 logs every timed-out request) would
    # fill a pipe and block until killed.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env)
        status, cpu_s, killed = _wait_bounded(process, limit_s)
        out.seek(0)
        err.seek(0)
        text_out, text_err = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    return Finished(os.waitstatus_to_exitcode(status), text_out, text_err, cpu_s, killed)


def _wait_bounded(process: subprocess.Popen[bytes], limit_s: float) -> tuple[int, float, bool]:
    """(wait status, CPU seconds, killed?) of a child that gets `limit_s` of wall time at most."""
    limit = time.monotonic() + limit_s
    killed = False
    # wait4 on the exact pid gives that child's rusage (CPU of the load generator only); poll()
    # would reap the child and lose it.
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > limit:
            process.kill()
            killed = True
            pid, status, usage = os.wait4(process.pid, 0)
            break
        time.sleep(0.05)
    process.returncode = os.waitstatus_to_exitcode(status)
    return status, usage.ru_utime + usage.ru_stime, killed


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    return found


def wrk_command(url: str, bodies: Path, concurrency: int, seconds: float, timeout_s: float) -> list[str]:
    return [
        wrk_binary(), "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", f"--timeout={timeout_s:.0f}s",
        "--latency", "-s", str(LUA), url, "--", str(bodies),
    ]  # fmt: skip


def run_wrk(
    url: str, bodies: Path, workload: str, concurrency: int, seconds: float, timeout_s: float = 30.0, nice: int = 0
) -> LoadResult:
    """Runs wrk once (`nice`: see run_bounded); the process is killed if it outlives its duration by 30 s."""
    command = wrk_command(url, bodies, concurrency, seconds, timeout_s)
    finished = run_bounded(command, seconds + 30.0, nice=nice)
    out, err = finished.stdout, finished.stderr
    line = next((ln for ln in out.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed ({finished.returncode}): {err or out}")
    data = json.loads(line.removeprefix("WRK_JSON "))
    lat = data["latency_us"]
    return LoadResult(
        workload=workload,
        concurrency=concurrency,
        seconds=data["duration_us"] / 1e6,
        requests=data["requests"],
        errors=sum(data["errors"].values()),
        p50_ms=lat["p50"] / 1000,
        p95_ms=lat["p95"] / 1000,
        p99_ms=lat["p99"] / 1000,
        mean_ms=lat["mean"] / 1000,
        client_cpu_s=finished.cpu_s,
    )
