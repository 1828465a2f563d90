"""The int8 graph the export writes: calibrate, build, measure against fp32 on held-out text, gate.

Plain static int8 is tried first. When it misses the gate, the linears whose calibrated inputs
carry outlier channels (one channel's peak at least OUTLIER_RATIO times the median channel's)
are mitigated, cheapest first:

1. SmoothQuant scale migration on those linears: one elementwise Mul each at run time (~3 % of
   the base model's kernel time), still constant scales, so exactly batch-invariant;
2. those linears kept in fp32: exact for them, but slower.

A mitigated candidate must pass the accuracy gate and run at least `min_speed` times as fast as
plain int8 of the same weights (measured here, the two graphs alternated run by run at 8 x 128:
service/export/speed.py); the first that does is written. If none does, the export fails with
every candidate's figures and what to do (e.g. accept a slower graph with a lower floor).
Per-token activation scales are not among the candidates:
the outliers sit in the same channels for every token, so a row's range stays ~60 % of the
tensor's and the error stays where per-tensor had it (measured: docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import onnx

from service.export import accuracy, parity
from service.export.accuracy import DEFAULT_MIN_SPEED, AccuracyGate
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
from service.export.speed import paired_ratio
from service.export.weights import SqueezeBertWeights
from service.manifest import Int8Accuracy
from service.runtime.layout import from_padded
from service.runtime.session import create_session

SMOOTHING_ALPHA = 0.5
# The speed floor (accuracy.DEFAULT_MIN_SPEED) is measured on SPEED_SHAPE with SPEED_PAIRS
# alternated runs; a floor of 0 skips the measurement.
SPEED_SHAPE = (8, 128)  # rows x tokens: a batch the batcher forms (1024 places)
SPEED_PAIRS = 20


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


def _failure(
    held_out: HeldOut,
    tried: list[tuple[str, Int8Accuracy]],
    gate: AccuracyGate,
    hint: str,
    slow: dict[str, float],
    min_speed: float,
) -> str:
    def verdict(what: str, f: Int8Accuracy) -> str:
        if what in slow:
            return f"accurate enough but {slow[what]:.2f}x the speed of plain int8, below {min_speed:g}x"
        return ", ".join(gate.failures(f))

    steps = "; ".join(f"{what}: {_summary(f)} ({verdict(what, f)})" for what, f in tried)
    accept_slow, both = "", " at a speed within the floor" if slow else ""
    if slow:  # a floor a little under the fastest accurate candidate's measured ratio (it varies run to run)
        fastest = max(slow, key=lambda what: slow[what])
        floor = max(0.0, math.floor(slow[fastest] * 20 - 1) / 20)
        accept_slow = f"accept {fastest} ({slow[fastest]:.2f}x) with --min-mitigated-speed {floor:.2f}, "
    return (
        f"int8 is not close enough to fp32 on held-out text ({held_out.source}){both}: {steps}. "
        f"To fix: {hint}{accept_slow}calibrate and measure on text from the model's domain (--calibration FILE, "
        "--eval FILE), serve fp32 (--precision fp32), or accept these figures with --min-agreement / --max-prob-delta"
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
    min_speed: float = DEFAULT_MIN_SPEED,
    max_seq_len: int = 128,
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
    plain = out.with_name(".plain-int8.onnx")
    slow: dict[str, float] = {}  # candidates that passed the accuracy gate but not the speed floor
    try:
        for index, (what, mitigation) in enumerate(attempts):
            emitter = DynamicInt8Emitter() if dynamic else StaticInt8Emitter(stats, mitigation)
            model = build_model(weights, task, emitter, labels, layout)
            onnx.checker.check_model(model)
            onnx.save(model, str(out))
            figures = held_out.compare(out)
            tried.append((what, figures))
            if progress:
                progress.note(f"{what}: {_summary(figures)}")
            if gate.failures(figures):
                if index == 0 and len(attempts) > 1 and min_speed > 0:
                    out.replace(plain)  # the baseline the mitigated candidates are timed against
                continue
            speed = None if index == 0 or min_speed <= 0 else _speed(plain, out, max_seq_len)
            if speed is not None and progress:
                progress.note(f"{what}: {speed:.2f}x the throughput of plain int8 at {_shape(max_seq_len)}")
            if speed is not None and speed < min_speed:
                slow[what] = speed
                continue
            return Int8Outcome(figures, _outcome_info(gate, stats, mitigation, what, tried, speed, max_seq_len))
    finally:
        plain.unlink(missing_ok=True)
    out.unlink(missing_ok=True)
    hint = _hint(dynamic, mitigate, len(attempts) - 1)
    raise ExportError(_failure(held_out, tried, gate, hint, slow, min_speed))


def _shape(max_seq_len: int) -> str:
    rows, tokens = SPEED_SHAPE
    return f"{rows} x {min(tokens, max_seq_len)}"


def _speed(plain: Path, candidate: Path, max_seq_len: int) -> float:
    """Throughput of `candidate` / plain int8, alternated run by run (service/export/speed.py)."""
    rows, tokens = SPEED_SHAPE
    return paired_ratio(plain, candidate, min(tokens, max_seq_len), rows, SPEED_PAIRS, threads=2).median


def _outcome_info(
    gate: AccuracyGate,
    stats: dict[str, ActivationStats],
    mitigation: Mitigation,
    what: str,
    tried: list[tuple[str, Int8Accuracy]],
    speed: float | None,
    max_seq_len: int,
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
        if speed is not None:
            info["mitigation"]["speed_vs_plain_int8"] = {"ratio": round(speed, 3), "shape": _shape(max_seq_len)}
    return info
