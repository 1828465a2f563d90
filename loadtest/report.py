"""Markdown report (and optional PNG plots) of a load-test run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest.probes import ServerSide
from loadtest.profile import Profile
from loadtest.wrk import LoadResult
from service.bench.timing import Measurement


@dataclass
class Cell:
    result: LoadResult
    server: ServerSide


@dataclass
class RunReport:
    command: str
    machine: dict[str, str]
    settings: str
    seconds: float
    cells: list[Cell] = field(default_factory=list)
    ceiling: list[Measurement] = field(default_factory=list)
    profile: Profile | None = None
    profile_note: str = ""
    plots: list[Path] = field(default_factory=list)
    plot_note: str = ""
    workload_notes: list[str] = field(default_factory=list)


HEADER = (
    "| workload | protocol | load | conc. | req/s | p50 ms | p95 ms | p99 ms | errors | 429 | dropped "
    "| client CPU | server CPU | rows/batch | ORT ms/batch | ORT busy | queue wait ms |\n"
    "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def cell_row(cell: Cell) -> str:
    r, s = cell.result, cell.server
    dropped = str(r.dropped_iterations) if r.offered_rps is not None else "–"
    return (
        f"| {r.workload} | {r.protocol} | {r.load} | {r.concurrency} | {r.rps:.1f} | {r.p50_ms:.1f} "
        f"| {r.p95_ms:.1f} | {r.p99_ms:.1f} | {r.error_rate:.1%} | {r.overloaded} | {dropped} "
        f"| {r.client_cpu_s / r.seconds:.0%} | {s.cpu_s / r.seconds:.0%} "
        f"| {s.rows_per_batch:.1f} | {s.ort_ms_per_batch:.1f} | {s.ort_busy_share:.0%} | {s.queue_wait_ms:.1f} |"
    )


def drivers_note(cells: list[Cell], seconds: float) -> str:
    """Which load generators made the cells, and how."""
    wrk = any(c.result.protocol == "rest-v1" and c.result.offered_rps is None for c in cells)
    k6 = any(c.result.protocol != "rest-v1" or c.result.offered_rps is not None for c in cells)
    parts = []
    if wrk or not k6:
        parts.append(
            "wrk 4.1 for closed-loop rest-v1 (1 thread: N connections each send the next request when the "
            "previous answer arrives)"
        )
    if k6:
        parts.append(
            "k6 1.1 for the other cells, with the same texts (closed loop `cN`: constant-vus, N VUs; open "
            "loop `R req/s`: constant-arrival-rate, all VUs pre-allocated, an arrival finding no free VU is "
            "dropped and counted in `dropped`)"
        )
    return f"Load: {'; '.join(parts)}; {seconds:.0f} s per cell after a warm-up, on the same 2 cores as the server."


def ceiling_table(ceiling: list[Measurement]) -> str:
    lines = ["| tokens | batch | median ms | seq/s |", "|---:|---:|---:|---:|"]
    lines += [f"| {m.seq_len} | {m.batch} | {m.median_ms:.1f} | {m.seq_per_s:.1f} |" for m in ceiling]
    return "\n".join(lines)


def profile_section(profile: Profile, note: str) -> str:
    lines = [f"py-spy, {profile.samples} samples of the server's Python threads (idle excluded) {note}:", ""]
    lines += ["| thread | share |", "|---|---:|"] + [f"| {t} | {s:.0%} |" for t, s in profile.by_thread]
    lines += ["", "| innermost frame | share |", "|---|---:|"] + [f"| `{f}` | {s:.0%} |" for f, s in profile.by_leaf]
    return "\n".join(lines)


def render(report: RunReport) -> str:
    m = report.machine
    parts = [
        "## Load test (loadtest/run.py)",
        "",
        f"Reproduce: `{report.command}`",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['isa']}), Python {m['python']}, onnxruntime "
        f"{m['onnxruntime']}. Server: `python -m service serve` on 127.0.0.1, {report.settings}. "
        + drivers_note(report.cells, report.seconds),
        "",
        *[f"- {note}" for note in report.workload_notes],
        "",
        "Columns: protocol = rest-v1 (/v1 JSON), rest-v2 (KServe v2 JSON), grpc-v1 (squeezeserve.v1), "
        "grpc-v2 (KServe ModelInfer); req/s counts every response (accepted or not); errors = share of "
        "responses that were not 200 / OK; 429 = of those, 429 / RESOURCE_EXHAUSTED; conc. = callers "
        "(closed) or mean requests in flight = req/s x mean latency (open); client/server CPU = CPU "
        "seconds per wall second (200 % = both cores); rows/batch, ORT ms/batch, ORT busy (share of wall "
        "time inside `session.run`) and queue wait come from the server's `/metrics`, differenced over "
        "the cell.",
        "",
        HEADER,
        *[cell_row(c) for c in report.cells],
        "",
    ]
    if report.ceiling:
        parts += ["Raw ONNX Runtime ceiling, same graph alone in the runner process, 2 threads, synthetic rows:", ""]
        parts += [ceiling_table(report.ceiling), ""]
    if report.profile:
        parts += [profile_section(report.profile, report.profile_note), ""]
    elif report.profile_note:
        parts += [report.profile_note, ""]
    if report.plots:
        parts += [f"![{p.stem}]({p.name})" for p in report.plots] + [""]
    if report.plot_note:
        parts += [report.plot_note, ""]
    return "\n".join(parts)


def _load_plot_libs() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _series(cells: list[Cell], open_loop: bool) -> dict[str, list[Cell]]:
    """Cells grouped by workload and protocol, closed- or open-loop ones only."""
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        r = cell.result
        if (r.offered_rps is not None) == open_loop:
            groups.setdefault(f"{r.workload} {r.protocol}", []).append(cell)
    return groups


def _draw(plt: Any, groups: dict[str, list[Cell]], title: str, xlabel: str, path: Path) -> bool:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, group in groups.items():
        if len(group) < 2:
            continue
        xs = [c.result.rps for c in group]
        for q, style in (("p50_ms", "-o"), ("p99_ms", "--x")):
            ax.plot(xs, [getattr(c.result, q) for c in group], style, label=f"{name} {q[:3]}")
        for c in group:
            r = c.result
            tag = f"c{r.concurrency}" if r.offered_rps is None else f"{r.offered_rps:g}/s"
            ax.annotate(tag, (r.rps, r.p50_ms), fontsize=7)
    drawn = bool(ax.get_legend_handles_labels()[0])
    if drawn:
        ax.set_xlabel(xlabel)
        ax.set_ylabel("latency (ms)")
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(f"squeezeserve: {title}")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    plt.close(fig)
    return drawn


def plot(cells: list[Cell], out_dir: Path) -> tuple[list[Path], str]:
    """Latency vs throughput: closed loop (points = callers) and open loop (points = offered rates)."""
    plt = _load_plot_libs()
    if plt is None:
        return [], "Plots skipped: matplotlib is not installed in the venv."
    figures = (
        (
            False,
            "latency vs throughput (closed loop)",
            "throughput (responses/s)",
            "latency_vs_throughput",
        ),
        (
            True,
            "latency vs achieved rate (open loop)",
            "achieved rate (responses/s)",
            "open_loop_latency",
        ),
    )
    paths = []
    for open_loop, title, xlabel, stem in figures:
        path = out_dir / f"{stem}.png"
        if _draw(plt, _series(cells, open_loop), title, xlabel, path):
            paths.append(path)
    return paths, ""
