"""Markdown report (and optional PNG plots) of a load-test run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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
    "| workload | conc. | req/s | p50 ms | p95 ms | p99 ms | errors | client CPU | server CPU "
    "| rows/batch | ORT ms/batch | ORT busy | queue wait ms |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def cell_row(cell: Cell) -> str:
    r, s = cell.result, cell.server
    return (
        f"| {r.workload} | {r.concurrency} | {r.rps:.1f} | {r.p50_ms:.1f} | {r.p95_ms:.1f} | {r.p99_ms:.1f} "
        f"| {r.error_rate:.1%} | {r.client_cpu_s / r.seconds:.0%} | {s.cpu_s / r.seconds:.0%} "
        f"| {s.rows_per_batch:.1f} | {s.ort_ms_per_batch:.1f} | {s.ort_busy_share:.0%} | {s.queue_wait_ms:.1f} |"
    )


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
        f"{m['onnxruntime']}. Server: `python -m service serve` on 127.0.0.1, {report.settings}. Load: wrk "
        f"4.1 (1 thread, closed loop: N connections each send the next request when the previous answer "
        f"arrives), {report.seconds:.0f} s per cell after a warm-up, on the same 2 cores as the server.",
        "",
        *[f"- {note}" for note in report.workload_notes],
        "",
        "Columns: client/server CPU = CPU seconds per wall second (200 % = both cores); rows/batch, ORT "
        "ms/batch, ORT busy (share of wall time inside `session.run`) and queue wait come from the "
        "server's `/metrics`, differenced over the cell.",
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


def plot(cells: list[Cell], out_dir: Path) -> tuple[list[Path], str]:
    """Latency vs throughput per workload (one line per workload, points = concurrency levels)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return [], "Plots skipped: matplotlib is not installed in the venv."
    workloads: dict[str, list[Cell]] = {}
    for cell in cells:
        workloads.setdefault(cell.result.workload, []).append(cell)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, group in workloads.items():
        if len(group) < 2:
            continue
        xs = [c.result.rps for c in group]
        for q, style in (("p50_ms", "-o"), ("p99_ms", "--x")):
            ax.plot(xs, [getattr(c.result, q) for c in group], style, label=f"{name} {q[:3]}")
        for c in group:
            ax.annotate(f"c{c.result.concurrency}", (c.result.rps, c.result.p50_ms), fontsize=7)
    ax.set_xlabel("throughput (requests/s)")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    ax.set_title("squeezeserve /v1/classify: latency vs throughput (closed loop, wrk)")
    path = out_dir / "latency_vs_throughput.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path], ""
