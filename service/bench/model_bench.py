"""`squeezeserve bench-model`: our graphs vs PyTorch eager and the plain ONNX export, as a report."""

from __future__ import annotations

import multiprocessing
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.bench.timing import (
    Feeds,
    Measurement,
    machine_details,
    padded_runner,
    summarize,
    time_runs,
)
from service.export.speed import PairedRatio, paired_ratio, synthetic_feeds
from service.runtime.session import SessionConfig, create_session

Runner = Callable[[Feeds], object]


@dataclass(frozen=True)
class VariantSpec:
    """What to measure, picklable: an ONNX graph, or a transformers checkpoint run in PyTorch."""

    name: str
    kind: str  # "ort" | "torch"
    path: str
    task: str = "sequence-classification"


@dataclass(frozen=True)
class BenchPlan:
    seq_lens: tuple[int, ...]
    batch_sizes: tuple[int, ...]
    threads: int
    runs: int


def ort_runner(graph: Path, threads: int) -> Runner:
    return padded_runner(create_session(graph, SessionConfig(intra_op_threads=threads)))


def torch_runner(model: Any, threads: int) -> Runner:
    import torch

    torch.set_num_threads(threads)

    def run(feeds: Feeds) -> object:
        with torch.inference_mode():
            return model(**{k: torch.from_numpy(v) for k, v in feeds.items()})

    return run


def _runner(spec: VariantSpec, threads: int) -> Runner:
    if spec.kind == "torch":
        from service.export.checkpoint import load_checkpoint

        return torch_runner(load_checkpoint(spec.path, spec.task).model, threads)
    return ort_runner(Path(spec.path), threads)


ROUNDS = 3
Samples = dict[tuple[int, int], list[float]]


def measure_round(spec: VariantSpec, plan: BenchPlan) -> Samples:
    """One round of every cell, in a fresh process: only this variant's threads exist while it is timed."""
    runner = _runner(spec, plan.threads)
    samples: Samples = {}
    for seq_len in plan.seq_lens:
        for batch in plan.batch_sizes:
            feeds = synthetic_feeds(batch, seq_len)
            time_runs(runner, feeds, 3)  # warm-up for this shape
            samples[(seq_len, batch)] = time_runs(runner, feeds, max(1, plan.runs // ROUNDS))
    return samples


def run_plan(specs: list[VariantSpec], plan: BenchPlan) -> list[Measurement]:
    """ROUNDS rounds; in each, every variant runs once in its own spawned process, the order rotating.

    Measured here: with several ORT sessions (and PyTorch's pool) alive in one process, idle
    worker threads slowed the measured session by up to ~1.8x, so variants never share a process.
    This VM also drifts 1.5-2x between fast and slow phases for minutes; interleaving the variants
    round by round (A B C, B C A, ...) spreads each phase over all of them instead of one, and each
    cell's median is taken over all its rounds.
    """
    context = multiprocessing.get_context("spawn")
    samples: dict[str, Samples] = {spec.name: {} for spec in specs}
    for round_index in range(ROUNDS):
        shift = round_index % max(len(specs), 1)
        for spec in specs[shift:] + specs[:shift]:
            with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
                for cell, times in pool.submit(measure_round, spec, plan).result().items():
                    samples[spec.name].setdefault(cell, []).extend(times)
    results = []
    for spec in specs:
        for (seq_len, batch), times in samples[spec.name].items():
            m = summarize(spec.name, seq_len, batch, times)
            print(
                f"{spec.name:40s} seq {seq_len:4d} batch {batch:3d}: {m.median_ms:9.2f} ms  {m.seq_per_s:8.1f} seq/s",
                file=sys.stderr,
                flush=True,
            )
            results.append(m)
    return results


def store_variants(model_dirs: list[Path]) -> list[VariantSpec]:
    from service.manifest import read_manifest

    specs = []
    for model_dir in model_dirs:
        manifest = read_manifest(model_dir)
        specs.append(
            VariantSpec(f"{manifest.name} ({manifest.precision})", "ort", str(model_dir / manifest.graph_file))
        )
        reference = manifest.extra.get("reference_graph")
        if reference and (model_dir / reference).is_file():
            specs.append(VariantSpec(f"{manifest.name} (fp32 reference)", "ort", str(model_dir / reference)))
    return specs


OUTLIER_PLAIN = "ORT int8 static, outlier checkpoint, unmitigated"
OUTLIER_MITIGATED = "ORT int8 static, outlier checkpoint, mitigated"


def base_size_variants(work: Path) -> list[VariantSpec]:
    """Export one untrained base-size classifier every way we compare, all from the same weights."""
    from service.export.baselines import export_plain, quantize_plain_default
    from service.export.checkpoint import load_checkpoint
    from service.export.demo import BASE_SHAPE, write_random_checkpoint
    from service.export.exporter import ExportRequest, export_model
    from service.export.progress import Progress

    task = "sequence-classification"
    checkpoint = write_random_checkpoint(work / "checkpoint", task, BASE_SHAPE)
    plain = export_plain(load_checkpoint(str(checkpoint), task).model, work / "plain.onnx")
    plain_int8 = quantize_plain_default(plain, work / "plain-quantize-dynamic.onnx")
    quiet = Progress(5, enabled=False)
    static = export_model(ExportRequest(str(checkpoint), task, "static", work / "store"), quiet)
    dynamic = export_model(
        ExportRequest(str(checkpoint), task, "dynamic", work / "store", quantization="dynamic"), quiet
    )
    return [
        VariantSpec("PyTorch eager fp32", "torch", str(checkpoint), task),
        VariantSpec("ORT fp32, plain torch.onnx.export", "ort", str(plain)),
        VariantSpec("ORT int8, default quantize_dynamic", "ort", str(plain_int8)),
        VariantSpec("ORT fp32, squeezeserve graph", "ort", str(static / "model.fp32.onnx")),
        VariantSpec("ORT int8 dynamic, squeezeserve", "ort", str(dynamic / "model.onnx")),
        VariantSpec("ORT int8 static, squeezeserve (served)", "ort", str(static / "model.onnx")),
        *_outlier_variants(work, quiet),
    ]


def _outlier_variants(work: Path, quiet: Any) -> list[VariantSpec]:
    """The same shape with 4 outlier channels per LayerNorm: plain int8 (misses the accuracy gate;
    exported with the gate off, for speed only) and the first mitigation that passes the accuracy
    gate, whatever its speed (the export's speed floor would refuse a slow one)."""
    from service.export.demo import BASE_SHAPE, write_random_checkpoint
    from service.export.exporter import ExportRequest, export_model
    from service.manifest import read_manifest

    task = "token-classification"  # at base size its outliers need mitigation (docs/ARCHITECTURE.md)
    checkpoint = str(write_random_checkpoint(work / "outliers", task, BASE_SHAPE, outlier_channels=4))
    unmitigated = ExportRequest(checkpoint, task, "outliers-plain", work / "store", max_prob_delta=1.0, mitigate=False)
    plain = export_model(unmitigated, quiet)
    # No speed floor here: this benchmark measures the mitigated graph's speed itself.
    accurate = ExportRequest(checkpoint, task, "outliers-mitigated", work / "store", min_mitigated_speed=0.0)
    mitigated = export_model(accurate, quiet)
    quantization = read_manifest(mitigated).quantization or {}
    applied = quantization.get("mitigation", {}).get("applied", "none needed")
    return [
        VariantSpec(OUTLIER_PLAIN, "ort", str(plain / "model.onnx")),
        VariantSpec(f"{OUTLIER_MITIGATED} ({applied})", "ort", str(mitigated / "model.onnx")),
    ]


def mitigation_cost(specs: list[VariantSpec], plan: BenchPlan) -> list[PairedRatio]:
    """Mitigated / unmitigated int8 throughput of the outlier checkpoint, alternated run by run
    (in a fresh process), per cell; empty when those variants are not in the plan."""
    plain = next((s for s in specs if s.name == OUTLIER_PLAIN), None)
    mitigated = next((s for s in specs if s.name.startswith(OUTLIER_MITIGATED)), None)
    if plain is None or mitigated is None:
        return []
    context = multiprocessing.get_context("spawn")
    cells = [(s, b) for s in plan.seq_lens for b in plan.batch_sizes]
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return [
            pool.submit(paired_ratio, Path(plain.path), Path(mitigated.path), s, b, plan.runs, plan.threads).result()
            for s, b in cells
        ]


def bench(
    model_dirs: list[Path], base_size: bool, plan: BenchPlan
) -> tuple[list[Measurement], dict[str, str], list[PairedRatio]]:
    with tempfile.TemporaryDirectory(prefix="squeezeserve-bench-") as tmp:
        specs = store_variants(model_dirs)
        if base_size:
            specs += base_size_variants(Path(tmp))
        return run_plan(specs, plan), machine_details(), mitigation_cost(specs, plan)
