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
    synthetic_feeds,
    time_runs,
)
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


def measure_variant(spec: VariantSpec, plan: BenchPlan) -> list[Measurement]:
    """Runs in a fresh process: only this variant's threads exist while it is timed.

    The cells are visited in ROUNDS interleaved rounds and each cell's median is taken over all
    its samples, so a few seconds of noise on this shared VM cannot own a whole cell.
    """
    runner = _runner(spec, plan.threads)
    cells = [(s, b) for s in plan.seq_lens for b in plan.batch_sizes]
    samples: dict[tuple[int, int], list[float]] = {cell: [] for cell in cells}
    per_round = max(1, plan.runs // ROUNDS)
    for _ in range(ROUNDS):
        for seq_len, batch in cells:
            feeds = synthetic_feeds(batch, seq_len)
            time_runs(runner, feeds, 3)  # warm-up for this shape
            samples[(seq_len, batch)] += time_runs(runner, feeds, per_round)
    results = [summarize(spec.name, s, b, samples[(s, b)]) for s, b in cells]
    for m in results:
        print(
            f"{spec.name:40s} seq {m.seq_len:4d} batch {m.batch:3d}: {m.median_ms:9.2f} ms  {m.seq_per_s:8.1f} seq/s",
            file=sys.stderr,
            flush=True,
        )
    return results


def run_plan(specs: list[VariantSpec], plan: BenchPlan) -> list[Measurement]:
    """One spawned process per variant, one after another.

    Measured here: with several ORT sessions (and PyTorch's pool) alive in one process, idle
    worker threads slowed the measured session by up to ~1.8x, so variants never share a process.
    """
    context = multiprocessing.get_context("spawn")
    results: list[Measurement] = []
    for spec in specs:
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            results += pool.submit(measure_variant, spec, plan).result()
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
    ]


def bench(model_dirs: list[Path], base_size: bool, plan: BenchPlan) -> tuple[list[Measurement], dict[str, str]]:
    with tempfile.TemporaryDirectory(prefix="squeezeserve-bench-") as tmp:
        specs = store_variants(model_dirs)
        if base_size:
            specs += base_size_variants(Path(tmp))
        return run_plan(specs, plan), machine_details()
