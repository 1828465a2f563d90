"""The int8 graph the export writes: calibrate, build, measure against fp32 on held-out text, gate.

Plain static int8 is tried first. When it misses the gate, the linears whose calibrated inputs
carry outlier channels (one channel's peak at least OUTLIER_RATIO times the median channel's)
are mitigated, cheapest first:

1. SmoothQuant scale migration on those linears: one elementwise Mul each at run time (~3 % of
   the base model's kernel time), still constant scales, so exactly batch-invariant;
2. those linears kept in fp32: exact for them, but slower.

The first candidate that passes is written; if none does, the export fails with every
candidate's figures and what to do. Per-token activation scales are not among the candidates:
the outliers sit in the same channels for every token, so a row's range stays ~60 % of the
tensor's and the error stays where per-tensor had it (measured: docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import onnx

from service.export import accuracy, parity
from service.export.accuracy import AccuracyGate
from service.export.calibration import Feeds
from service.export.errors import ExportError
from service.export.graph import build_model
from service.export.progress import Progress
from service.export.quantize import (
    OUTLIER_RATIO,
    ActivationStats,
    CalibrationEmitter,
    DynamicInt8Emitter,
    Mitigation,
    StaticInt8Emitter,
)
from service.export.weights import SqueezeBertWeights
from service.manifest import Int8Accuracy
from service.runtime.layout import from_padded
from service.runtime.session import create_session

SMOOTHING_ALPHA = 0.5


@dataclass(frozen=True)
class HeldOut:
    """Held-out batches and the fp32 graph's outputs on them (computed once, reused per candidate)."""

    task: str
    labels: list[str]
    source: str
    data: list[Feeds]
    fp32: list[list[Any]]

    @staticmethod
    def measure(task: str, labels: list[str], source: str, data: list[Feeds], fp32_graph: Path) -> HeldOut:
        session = create_session(fp32_graph)
        return HeldOut(task, labels, source, data, [parity.run_onnx(session, f) for f in data])

    def compare(self, graph: Path) -> Int8Accuracy:
        session = create_session(graph)
        int8 = [parity.run_onnx(session, f) for f in self.data]
        return accuracy.compare(self.task, self.fp32, int8, self.data, self.labels, self.source)


@dataclass(frozen=True)
class Int8Outcome:
    figures: Int8Accuracy
    info: dict[str, Any]  # the manifest's quantization entries: gate, mitigation and why


def calibrate(
    weights: SqueezeBertWeights, task: str, labels: int, data: list[Feeds], work: Path, layout: str
) -> dict[str, ActivationStats]:
    """Input statistics of every quantized linear; a packed graph's taps hold real tokens only."""
    emitter = CalibrationEmitter()
    path = work / ".calibration.onnx"
    onnx.save(build_model(weights, task, emitter, labels, layout), str(path))
    session = create_session(path)
    names = [o.name for o in session.get_outputs()]
    stats: dict[str, ActivationStats] = {}
    for feeds in data:
        outputs = dict(zip(names, session.run(None, from_padded(layout, feeds))))
        for linear, tensor in emitter.taps.items():
            seen = ActivationStats.of(outputs[tensor])
            stats[linear] = stats[linear].merged(seen) if linear in stats else seen
    path.unlink()
    return stats


def _summary(figures: Int8Accuracy) -> str:
    return (
        f"{figures.decisive_agreement:.2%} of {figures.decisive} decisive {figures.unit}s agree, "
        f"max |Δp| {figures.max_prob_delta:.3f}"
    )


def _candidates(stats: dict[str, ActivationStats]) -> list[tuple[str, Mitigation]]:
    flagged = frozenset(name for name, s in stats.items() if s.outlier_ratio() >= OUTLIER_RATIO)
    if not flagged:
        return []
    return [
        (
            f"SmoothQuant (alpha {SMOOTHING_ALPHA}) on {len(flagged)} outlier linears",
            Mitigation(flagged, SMOOTHING_ALPHA),
        ),
        (f"outlier channels of {len(flagged)} linears in fp32", Mitigation(split=flagged)),
        (f"{len(flagged)} outlier linears kept in fp32", Mitigation(kept_fp32=flagged)),
    ]


def _gate_info(gate: AccuracyGate) -> dict[str, Any]:
    return {"decisive_margin": accuracy.DECISIVE_MARGIN, **asdict(gate)}


def _failure(held_out: HeldOut, tried: list[tuple[str, Int8Accuracy]], gate: AccuracyGate, hint: str) -> str:
    steps = "; ".join(f"{what}: {_summary(f)} ({', '.join(gate.failures(f))})" for what, f in tried)
    return (
        f"int8 is not close enough to fp32 on held-out text ({held_out.source}): {steps}. "
        f"To fix: {hint}calibrate and measure on text from the model's domain (--calibration FILE, --eval FILE), "
        "serve fp32 (--precision fp32), or accept these figures with --min-agreement / --max-prob-delta"
    )


def _hint(dynamic: bool, mitigate: bool, candidates: int) -> str:
    if dynamic:
        return "use --quantization static (calibrated, and mitigated when needed), "
    if not mitigate:
        return "drop --no-mitigation to let the export mitigate, or "
    if not candidates:
        return f"(no linear's input has an outlier channel >= {OUTLIER_RATIO:g}x the median, nothing to mitigate) "
    return ""


def quantize_gated(
    weights: SqueezeBertWeights,
    labels: int,
    calibration: list[Feeds],
    held_out: HeldOut,
    out: Path,
    gate: AccuracyGate,
    dynamic: bool = False,
    mitigate: bool = True,
    progress: Progress | None = None,
    layout: str = "packed",
) -> Int8Outcome:
    """Write the first int8 graph that passes the gate to `out`, or raise ExportError."""
    task = held_out.task
    if dynamic:
        stats: dict[str, ActivationStats] = {}
        attempts = [("dynamic int8", Mitigation())]
    else:
        stats = calibrate(weights, task, labels, calibration, out.parent, layout)
        attempts = [("plain static int8", Mitigation())] + (_candidates(stats) if mitigate else [])
    tried: list[tuple[str, Int8Accuracy]] = []
    for what, mitigation in attempts:
        emitter = DynamicInt8Emitter() if dynamic else StaticInt8Emitter(stats, mitigation)
        model = build_model(weights, task, emitter, labels, layout)
        onnx.checker.check_model(model)
        onnx.save(model, str(out))
        figures = held_out.compare(out)
        tried.append((what, figures))
        if progress:
            progress.note(f"{what}: {_summary(figures)}")
        if not gate.failures(figures):
            return Int8Outcome(figures, _outcome_info(gate, stats, mitigation, what, tried))
    out.unlink()
    raise ExportError(_failure(held_out, tried, gate, _hint(dynamic, mitigate, len(attempts) - 1)))


def _outcome_info(
    gate: AccuracyGate,
    stats: dict[str, ActivationStats],
    mitigation: Mitigation,
    what: str,
    tried: list[tuple[str, Int8Accuracy]],
) -> dict[str, Any]:
    changed = sorted(mitigation.smoothed | mitigation.split | mitigation.kept_fp32)
    info: dict[str, Any] = {"gate": _gate_info(gate)}
    if changed:
        info["mitigation"] = {
            "applied": what,
            "why": f"plain static int8 missed the gate ({_summary(tried[0][1])}); "
            f"these linears' inputs have a channel >= {OUTLIER_RATIO:g}x the median channel's peak",
            "linears": {name: round(stats[name].outlier_ratio(), 1) for name in changed},
            "tried": {w: asdict(f) for w, f in tried[:-1]},
        }
    return info
