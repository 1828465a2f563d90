"""`squeezeserve export`: checkpoint -> fp32 graph (parity-gated) -> int8 graph -> model store entry."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from service import __version__
from service.export import parity
from service.export.accuracy import DEFAULT_MAX_PROB_DELTA, DEFAULT_MIN_AGREEMENT, DEFAULT_MIN_SPEED, AccuracyGate
from service.export.calibration import (
    Feeds,
    Sample,
    batches,
    default_samples,
    held_out_samples,
    read_calibration_file,
)
from service.export.checkpoint import Checkpoint, load_checkpoint
from service.export.errors import ExportError
from service.export.graph import INPUT_NAMES, OUTPUT_NAMES, Fp32Emitter, build_model
from service.export.int8 import HeldOut, Int8Outcome, quantize_gated
from service.export.progress import Progress
from service.export.store import check_name, prepare_store, staged_model_dir
from service.export.weights import extract_weights
from service.manifest import GRAPH_FILE, MANIFEST_FILE, Manifest, Parity, sha256_file
from service.runtime.session import create_session

REFERENCE_GRAPH_FILE = "model.fp32.onnx"
QUANTIZATIONS = ("static", "dynamic")
PARITY_BATCHES = 6


@dataclass(frozen=True)
class ExportRequest:
    source: str
    task: str
    name: str
    store: Path
    precision: str = "int8"
    quantization: str = "static"
    max_seq_len: int | None = None
    calibration: Path | None = None
    replace: bool = False
    eval_file: Path | None = None  # held-out text for the int8 figures (default: the built-in held-out half)
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    max_prob_delta: float = DEFAULT_MAX_PROB_DELTA
    mitigate: bool = True
    min_mitigated_speed: float = DEFAULT_MIN_SPEED  # a mitigated graph's throughput / plain int8's, at least
    layout: str = "packed"  # service/runtime/layout.py; "padded" only to compare against


def _resolve_max_seq_len(requested: int | None, ckpt: Checkpoint) -> int:
    limit = int(ckpt.model.config.max_position_embeddings)
    tokenizer_max = int(getattr(ckpt.tokenizer, "model_max_length", limit) or limit)
    if requested is None:
        return min(limit, tokenizer_max, 512)
    if not 8 <= requested <= limit:
        raise ExportError(f"--max-seq-len {requested} is out of range: the model supports 8..{limit}")
    return requested


def _save(model: onnx.ModelProto, path: Path) -> None:
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _quantization_info(request: ExportRequest, samples: int, outcome: Int8Outcome | None) -> dict[str, Any] | None:
    if request.precision == "fp32" or outcome is None:
        return None
    common = {
        "weights": "int8 symmetric per output channel, 7-bit range (no int16 saturation on AVX2 without VNNI)",
        "quantized": "encoder linear layers (the 1x1 convolutions as MatMul; q/k/v inside fused QAttention)",
        "kept_fp32": "embeddings, attention scores and softmax, layer norms, GELU, pooler, classifier",
    }
    if request.quantization == "dynamic":
        return {
            **common,
            "scheme": "dynamic",
            "activations": "uint8 per tensor, scale computed per run",
            "batch_invariant": False,
            **outcome.info,
        }
    source = str(request.calibration) if request.calibration else "built-in"
    return {
        **common,
        "scheme": "static",
        "activations": "uint8 asymmetric per tensor, min/max calibrated",
        "batch_invariant": True,
        "calibration": {"source": source, "samples": samples},
        **outcome.info,
    }


def _check_fp32(ckpt: Checkpoint, task: str, graph: Path, data: list[Feeds]) -> float:
    session = create_session(graph)
    token_level = task != "sequence-classification"
    worst = 0.0
    for feeds in data:
        expected = parity.run_torch(ckpt.model, feeds, OUTPUT_NAMES[task])
        worst = max(
            worst, parity.max_abs_diff(parity.run_onnx(session, feeds), expected, feeds["attention_mask"], token_level)
        )
    if not worst <= parity.FP32_TOLERANCE:
        raise ExportError(
            f"parity gate failed: fp32 ONNX differs from PyTorch by {worst:.2e} (limit {parity.FP32_TOLERANCE:.0e})"
        )
    return worst


def _batch_invariance(task: str, served: Path, data: list[Feeds]) -> float:
    mixed = max(data, key=lambda f: float(np.ptp(f["attention_mask"].sum(axis=1))))
    return parity.batch_invariance(create_session(served), mixed, task != "sequence-classification")


def _manifest(
    request: ExportRequest,
    ckpt: Checkpoint,
    max_seq_len: int,
    graph: Path,
    figures: Parity,
    calibration_samples: int,
    outcome: Int8Outcome | None,
) -> Manifest:
    import torch
    import transformers

    config = ckpt.model.config
    arch_keys = (
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "q_groups",
        "k_groups",
        "v_groups",
        "post_attention_groups",
        "intermediate_groups",
        "output_groups",
        "vocab_size",
        "max_position_embeddings",
    )
    return Manifest(
        name=request.name,
        task=request.task,
        id2label={int(k): str(v) for k, v in config.id2label.items()},
        problem_type=getattr(config, "problem_type", None),
        max_seq_len=max_seq_len,
        input_names=INPUT_NAMES,
        output_names=OUTPUT_NAMES[request.task],
        precision=request.precision,
        quantization=_quantization_info(request, calibration_samples, outcome),
        source={
            "model": ckpt.source,
            "exported_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "exporter": f"squeezeserve {__version__}",
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        },
        graph_sha256=sha256_file(graph),
        parity=figures,
        trained=ckpt.trained,
        architecture={"model_type": "squeezebert", **{k: getattr(config, k) for k in arch_keys}},
        layout=request.layout,
        extra={"reference_graph": REFERENCE_GRAPH_FILE} if request.precision == "int8" else {},
    )


def _samples(request: ExportRequest) -> list[Sample]:
    return read_calibration_file(request.calibration) if request.calibration else default_samples()


def _held_out(request: ExportRequest, ckpt: Checkpoint, max_seq_len: int, fp32_graph: Path) -> HeldOut:
    samples = read_calibration_file(request.eval_file, "eval") if request.eval_file else held_out_samples()
    source = str(request.eval_file) if request.eval_file else "built-in held-out half"
    labels = [str(ckpt.model.config.id2label[i]) for i in range(int(ckpt.model.config.num_labels))]
    data = list(batches(ckpt.tokenizer, samples, max_seq_len))
    return HeldOut.measure(request.task, labels, source, data, fp32_graph)


def _report(figures: Parity, outcome: Int8Outcome | None) -> str:
    """The export's closing line: what the served graph is worth against fp32."""
    if outcome is None:
        return f"fp32 graph: max |ONNX - PyTorch| {figures.fp32_vs_torch_max_abs:.1e}"
    f = outcome.figures
    extra = f", entity F1 {f.entity_f1:.3f}" if f.entity_f1 is not None else ""
    if f.start_end_agreement is not None:
        extra = f", start/end agreement {f.start_end_agreement:.2%}"
    applied = outcome.info.get("mitigation", {}).get("applied", "no mitigation needed")
    return (
        f"int8 vs fp32 on {f.eval_source} ({f.rows} rows): {f.decisive_agreement:.2%} of {f.decisive} decisive "
        f"{f.unit}s agree ({f.agreement:.2%} of all {f.decisions}){extra}, max |Δp| {f.max_prob_delta:.4f}, "
        f"max |Δlogit| {f.max_logit_delta:.3f}; {applied}; "
        f"batch invariance Δ {figures.int8_batch_invariance_max_abs:.1e}"
    )


def export_model(request: ExportRequest, progress: Progress | None = None) -> Path:
    """Run the whole export; returns the new model directory. Nothing is left behind on failure."""
    if request.precision not in ("int8", "fp32") or request.quantization not in QUANTIZATIONS:
        raise ExportError(f"unsupported precision/quantization {request.precision}/{request.quantization}")
    check_name(request.name)
    store = prepare_store(request.store)
    progress = progress or Progress(5)
    with progress.step(f"loading {request.source}"):
        ckpt = load_checkpoint(request.source, request.task)
        max_seq_len = _resolve_max_seq_len(request.max_seq_len, ckpt)
        samples = _samples(request)
        data = list(batches(ckpt.tokenizer, samples, max_seq_len))
        state = {k: v.detach().float().numpy() for k, v in ckpt.model.state_dict().items()}
        weights = extract_weights(state, ckpt.model.config.to_dict(), request.task)
        labels = int(ckpt.model.config.num_labels)
    with staged_model_dir(store, request.name, request.replace) as staging:
        fp32_name = GRAPH_FILE if request.precision == "fp32" else REFERENCE_GRAPH_FILE
        with progress.step("building the fp32 graph and checking it against PyTorch"):
            fp32_graph = build_model(weights, request.task, Fp32Emitter(), labels, request.layout)
            _save(fp32_graph, staging / fp32_name)
            fp32_delta = _check_fp32(ckpt, request.task, staging / fp32_name, data[:PARITY_BATCHES])
            progress.note(f"max |fp32 ONNX - PyTorch| = {fp32_delta:.2e}")
        figures = Parity(
            samples=sum(len(f["input_ids"]) for f in data[:PARITY_BATCHES]), fp32_vs_torch_max_abs=fp32_delta
        )
        outcome = None
        if request.precision == "int8":
            gate = AccuracyGate(request.min_agreement, request.max_prob_delta)
            with progress.step(
                f"quantizing to int8 ({request.quantization}) on {len(samples)} samples, gated on held-out text"
            ):
                held_out = _held_out(request, ckpt, max_seq_len, staging / fp32_name)
                outcome = quantize_gated(
                    weights,
                    labels,
                    data,
                    held_out,
                    staging / GRAPH_FILE,
                    gate,
                    dynamic=request.quantization == "dynamic",
                    mitigate=request.mitigate,
                    progress=progress,
                    layout=request.layout,
                    min_speed=request.min_mitigated_speed,
                    max_seq_len=max_seq_len,
                )
            with progress.step("checking int8 batch invariance"):
                invariance = _batch_invariance(request.task, staging / GRAPH_FILE, data[:PARITY_BATCHES])
                figures = Parity(figures.samples, fp32_delta, outcome.figures, invariance)
        with progress.step("writing tokenizer and manifest"):
            ckpt.tokenizer.save_pretrained(staging)
            manifest = _manifest(request, ckpt, max_seq_len, staging / GRAPH_FILE, figures, len(samples), outcome)
            (staging / MANIFEST_FILE).write_text(manifest.to_json(), encoding="utf-8")
        progress.note(_report(figures, outcome))
    return store / request.name
