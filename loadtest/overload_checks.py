"""What a good overload run looks like, checked per scenario, and the markdown that reports it."""

from __future__ import annotations

from dataclasses import dataclass, field

from loadtest.report import Cell
from loadtest.wrk import LoadResult

TRANSPORTS = {"rest": "http", "grpc": "grpc"}  # protocol prefix -> the `transport` label of /metrics


@dataclass(frozen=True)
class Limits:
    """The server settings the run passes, and what they imply for an accepted request's latency."""

    max_queued_rows: int
    max_batch_size: int
    min_goodput_share: float  # of the measured capacity

    def p99_bound_ms(self, drain_rps: float) -> float:
        """A full queue ahead of the request, the batch running when it arrived, and its own batch.

        One row per request (1-text classify), so rows/s = req/s, and a batch of max_batch_size
        rows takes max_batch_size / drain_rps. The drain rate is the scenario's own goodput (what
        the server sustained while also refusing); the goodput check keeps that near capacity.
        """
        return 1000 * (self.max_queued_rows + 2 * self.max_batch_size) / drain_rps if drain_rps else 0.0


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class Scenario:
    """One overload run: its client-side cell, the server's request counters, and the verdicts."""

    label: str
    cell: Cell
    capacity_rps: float
    server_counts: dict[str, float]  # outcome -> requests (this protocol's transport only)
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)


def counts_delta(
    before: dict[tuple[str, str], float], after: dict[tuple[str, str], float], transport: str
) -> dict[str, float]:
    keys = {outcome for t, outcome in (*before, *after) if t == transport}
    return {o: after.get((transport, o), 0.0) - before.get((transport, o), 0.0) for o in sorted(keys)}


def status_names(protocol: str) -> tuple[str, str]:
    """(accepted, refused) status names as loadtest/k6.py reports them."""
    return ("OK", "RESOURCE_EXHAUSTED") if protocol.startswith("grpc") else ("200", "429")


def check_statuses(r: LoadResult) -> Check:
    accepted, refused = status_names(r.protocol)
    others = {s: n for s, n in r.statuses.items() if s not in (accepted, refused)}
    detail = ", ".join(f"{s}: {n}" for s, n in sorted(r.statuses.items()))
    return Check(f"only {accepted} and {refused} (no 5xx / UNAVAILABLE / timeouts)", not others, detail)


def check_overloaded(r: LoadResult) -> Check:
    return Check("overload reached (some requests refused)", r.overloaded > 0, f"{r.overloaded} refused")


def check_retry_after(r: LoadResult) -> Check:
    hint = "retry-after trailing metadata" if r.protocol.startswith("grpc") else "Retry-After header"
    values = f"; values median {r.retry_after_s[0]:g} s, max {r.retry_after_s[1]:g} s" if r.retry_after_s else ""
    detail = f"{r.missing_retry_after} of {r.overloaded} refusals without one{values}"
    return Check(f"every refusal carried a {hint}", r.missing_retry_after == 0, detail)


def check_latency(r: LoadResult, limits: Limits, capacity_rps: float) -> Check:
    p50, p99, bound = r.ok_p50_ms or 0.0, r.ok_p99_ms or 0.0, limits.p99_bound_ms(r.goodput)
    detail = (
        f"p50 {p50:.0f} ms, p99 {p99:.0f} ms; bound {bound:.0f} ms at this run's {r.goodput:.1f} req/s "
        f"({limits.p99_bound_ms(capacity_rps):.0f} ms at capacity)"
    )
    return Check("accepted p99 within the queue bound", r.ok_p99_ms is not None and 0 < p99 <= bound, detail)


def check_goodput(r: LoadResult, capacity_rps: float, share: float) -> Check:
    got = r.goodput / capacity_rps if capacity_rps else 0.0
    detail = f"{r.goodput:.1f} req/s accepted = {got:.0%} of {capacity_rps:.1f} req/s capacity (floor {share:.0%})"
    return Check("goodput near capacity", got >= share, detail)


def check_server_counts(r: LoadResult, server: dict[str, float]) -> Check:
    accepted, refused = status_names(r.protocol)
    client = (r.statuses.get(accepted, 0), r.statuses.get(refused, 0), r.requests)
    served = (int(server.get("ok", 0)), int(server.get("overloaded", 0)), int(sum(server.values())))
    detail = f"client ok/refused/total {client[0]}/{client[1]}/{client[2]}, server {served[0]}/{served[1]}/{served[2]}"
    return Check("server /metrics request counters match the client's", client == served, detail)


def run_checks(scenario: Scenario, limits: Limits) -> None:
    r = scenario.cell.result
    scenario.checks = [
        check_statuses(r),
        check_overloaded(r),
        check_retry_after(r),
        check_latency(r, limits, scenario.capacity_rps),
        check_goodput(r, scenario.capacity_rps, limits.min_goodput_share),
        check_server_counts(r, scenario.server_counts),
    ]


# ---- markdown ---------------------------------------------------------------------------------

HEADER = (
    "| scenario | s | responses | accepted | refused | other | dropped | accepted p50 / p99 ms | p99 bound ms "
    "| goodput req/s | of capacity | client CPU | server CPU | rows/batch | ORT ms/batch | queue wait ms "
    "| checks |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
)


def scenario_row(s: Scenario, limits: Limits) -> str:
    r, server, accepted_refused = s.cell.result, s.cell.server, status_names(s.cell.result.protocol)
    accepted, refused = (r.statuses.get(name, 0) for name in accepted_refused)
    dropped = str(r.dropped_iterations) if r.offered_rps is not None else "–"
    verdict = "pass" if s.passed else "**FAIL**: " + "; ".join(c.name for c in s.checks if not c.passed)
    return (
        f"| {s.label} | {r.seconds:.1f} | {r.requests} | {accepted} | {refused} | {r.requests - accepted - refused} "
        f"| {dropped} | {r.ok_p50_ms or 0:.0f} / {r.ok_p99_ms or 0:.0f} | {limits.p99_bound_ms(r.goodput):.0f} "
        f"| {r.goodput:.1f} | {r.goodput / s.capacity_rps:.0%} | {r.client_cpu_s / r.seconds:.0%} "
        f"| {server.cpu_s / r.seconds:.0%} | {server.rows_per_batch:.1f} | {server.ort_ms_per_batch:.0f} "
        f"| {server.queue_wait_ms:.0f} | {verdict} |"
    )


def check_lines(s: Scenario) -> list[str]:
    lines = [f"{s.label}:"]
    lines += [f"- {'PASS' if c.passed else 'FAIL'} {c.name}: {c.detail}" for c in s.checks]
    return [*lines, ""]


def render(command: str, intro: list[str], scenarios: list[Scenario], limits: Limits) -> str:
    parts = ["## Overload (loadtest/overload.py)", "", f"Reproduce: `{command}`", "", *intro, ""]
    parts += [HEADER, *(scenario_row(s, limits) for s in scenarios), ""]
    for scenario in scenarios:
        parts += check_lines(scenario)
    failed = [s.label for s in scenarios if not s.passed]
    parts.append(f"Result: {'all checks passed' if not failed else 'FAILED: ' + ', '.join(failed)}.")
    return "\n".join(parts) + "\n"
