"""One bounded closed-loop wrk run (N connections = N callers), with the client's own CPU time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
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

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


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
    url: str, bodies: Path, workload: str, concurrency: int, seconds: float, timeout_s: float = 30.0
) -> LoadResult:
    """Runs wrk once; the process is killed if it outlives its duration by 30 s."""
    command = wrk_command(url, bodies, concurrency, seconds, timeout_s)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    limit = time.monotonic() + seconds + 30.0
    # wait4 on the exact pid gives that child's rusage (CPU of the load generator only); poll()
    # would reap the child and lose it.
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > limit:
            process.kill()
            pid, status, usage = os.wait4(process.pid, 0)
            break
        time.sleep(0.05)
    assert process.stdout is not None and process.stderr is not None
    out, err = process.stdout.read().decode(), process.stderr.read().decode()
    process.returncode = os.waitstatus_to_exitcode(status)
    line = next((ln for ln in out.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed ({process.returncode}): {err or out}")
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
        client_cpu_s=usage.ru_utime + usage.ru_stime,
    )
