"""Markdown report (and optional PNG plots) of a load-test run."""

from __future__ import annotations

import argparse
import sys
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


def _series(cells: list[Cell], open_loop: bool) -> dict[str, dict[str, list[Cell]]]:
    """workload -> protocol -> cells, closed- or open-loop ones only."""
    groups: dict[str, dict[str, list[Cell]]] = {}
    for cell in cells:
        r = cell.result
        if (r.offered_rps is not None) == open_loop:
            groups.setdefault(r.workload, {}).setdefault(r.protocol, []).append(cell)
    return {w: {p: g for p, g in by_protocol.items() if len(g) >= 2} for w, by_protocol in groups.items()}


PROTOCOL_COLOURS = {"rest-v1": "tab:blue", "rest-v2": "tab:orange", "grpc-v1": "tab:green", "grpc-v2": "tab:red"}


def _draw(plt: Any, groups: dict[str, dict[str, list[Cell]]], title: str, xlabel: str, path: Path) -> bool:
    """One panel per workload; colour = protocol; solid p50, dashed p99; points labelled by load."""
    panels = [(w, by_protocol) for w, by_protocol in groups.items() if by_protocol]
    if not panels:
        return False
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.6 * rows + 0.6), squeeze=False)
    for ax, (workload, by_protocol) in zip(axes.flat, panels, strict=False):
        for protocol, group in by_protocol.items():
            colour = PROTOCOL_COLOURS.get(protocol)
            xs = [c.result.rps for c in group]
            ax.plot(xs, [c.result.p50_ms for c in group], "-o", color=colour, ms=4, label=f"{protocol} p50")
            ax.plot(xs, [c.result.p99_ms for c in group], "--x", color=colour, ms=4, alpha=0.6, label=f"{protocol} p99")
            for c in group:
                r = c.result
                tag = f"c{r.concurrency}" if r.offered_rps is None else f"{r.offered_rps:g}/s"
                ax.annotate(tag, (r.rps, r.p50_ms), fontsize=6, xytext=(3, -8), textcoords="offset points")
        ax.set_title(workload, fontsize=10)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("latency (ms, log)", fontsize=8)
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    legend: dict[str, Any] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    labels, handles = list(legend), list(legend.values())
    fig.legend(handles, labels, loc="lower center", ncol=min(8, len(labels)), fontsize=7, frameon=False)
    fig.suptitle(f"squeezeserve: {title}", fontsize=11)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


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


def cells_from_table(markdown: str) -> list[Cell]:
    """The plotted figures of a written report's main table (to redraw its plots without re-running)."""
    cells = []
    for line in markdown.splitlines():
        cols = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cols) != 17 or not cols[2].startswith(("closed c", "open ")):
            continue
        closed = cols[2].startswith("closed")
        result = LoadResult(
            workload=cols[0], concurrency=int(cols[2].removeprefix("closed c")) if closed else int(cols[3]),
            seconds=1000.0, requests=round(float(cols[4]) * 1000), errors=0, p50_ms=float(cols[5]),
            p95_ms=float(cols[6]), p99_ms=float(cols[7]), mean_ms=0.0, client_cpu_s=0.0, protocol=cols[1],
            offered_rps=None if closed else float(cols[2].split()[1]),
        )  # fmt: skip
        cells.append(Cell(result, ServerSide(0.0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)))
    return cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Redraw the plots of a written load-test report.")
    parser.add_argument("report", type=Path, help="report.md written by loadtest.run (plots go beside it)")
    args = parser.parse_args(argv)
    cells = cells_from_table(args.report.read_text(encoding="utf-8"))
    paths, note = plot(cells, args.report.parent)
    print(note or "\n".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
