"""Markdown for bench-model results; replaces only its own section of an existing report file."""

from __future__ import annotations

import datetime
from pathlib import Path

from service.bench.timing import Measurement
from service.export.speed import PairedRatio

START, END = "<!-- bench-model:start -->", "<!-- bench-model:end -->"
PLAIN, TORCH = "ORT fp32, plain torch.onnx.export", "PyTorch eager fp32"
SERVED_INT8 = "ORT int8 static, squeezeserve (served)"


def _cells(results: list[Measurement]) -> list[tuple[int, int]]:
    return sorted({(m.seq_len, m.batch) for m in results})


def _table(results: list[Measurement], baseline: str | None) -> list[str]:
    cells = _cells(results)
    by_key = {(m.variant, m.seq_len, m.batch): m for m in results}
    variants = list(dict.fromkeys(m.variant for m in results))
    head = "| variant | " + " | ".join(f"seq {s}, batch {b}" for s, b in cells) + " |"
    lines = [head, "|---|" + "---:|" * len(cells)]
    for variant in variants:
        row = []
        for s, b in cells:
            m = by_key.get((variant, s, b))
            base = by_key.get((baseline, s, b)) if baseline else None
            if m is None:
                row.append("")
            elif base is None:
                row.append(f"{m.median_ms:.1f} ms · {m.seq_per_s:.1f}/s")
            else:
                row.append(f"{m.seq_per_s / base.seq_per_s:.2f}x")
        lines.append(f"| {variant} | " + " | ".join(row) + " |")
    return lines


def _mitigation_lines(ratios: list[PairedRatio]) -> list[str]:
    if not ratios:
        return []
    cells = ", ".join(
        f"seq {r.seq_len} batch {r.batch}: **{r.median:.2f}x** (quartiles {r.low_quartile:.2f}-{r.high_quartile:.2f})"
        for r in ratios
    )
    return [
        "",
        "Cost of the outlier mitigation: throughput of the mitigated int8 graph relative to plain int8 of the "
        f"same outlier-bearing weights, the two alternated run by run in one process (median of {ratios[0].pairs} "
        f"pair ratios per cell, the VM's drift cancels): {cells}.",
    ]


def render(
    results: list[Measurement],
    machine: dict[str, str],
    command: str,
    runs: int,
    threads: int,
    mitigation: list[PairedRatio] | None = None,
) -> str:
    variants = {m.variant for m in results}
    lines = [
        START,
        "## Model benchmark (bench-model)",
        "",
        f"Reproduce: `{command}`",
        "",
        f"Measured {datetime.date.today().isoformat()} on {machine['cpu']}, {machine['cores']} cores "
        f"({machine['isa']}), Python {machine['python']}, onnxruntime {machine['onnxruntime']}; "
        f"{threads} intra-op threads; median of {runs} runs per cell after warm-up, over 3 rounds in "
        "which every variant runs once, alone in its own fresh process, in rotating order.",
        "",
        "Median latency per batch and throughput (sequences/s):",
        "",
        *_table(results, None),
    ]
    baselines = ((PLAIN, "ORT fp32 (plain export)"), (TORCH, "PyTorch eager"), (SERVED_INT8, "plain int8 (served)"))
    for baseline, label in baselines:
        if baseline in variants:
            lines += ["", f"Throughput relative to {label}:", "", *_table(results, baseline)]
    return "\n".join(lines + _mitigation_lines(mitigation or []) + [END]) + "\n"


def write_section(path: Path, section: str) -> None:
    replace_marked(path, START, END, section)


def replace_marked(path: Path, start: str, end: str, block: str) -> None:
    """Put `block` (which opens with `start` and closes with `end`) where the file has those markers.

    Appended at the end if the file has no such markers; the rest of the file is left as it is.
    Shared by the model benchmark and the load tests, which own different parts of one document.
    """
    block = block.rstrip("\n")
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
