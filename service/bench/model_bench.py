"""`squeezeserve bench-model`: our graphs vs PyTorch eager and the plain ONNX export, as a report."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.bench.timing import Feeds, Measurement, machine_details, measure
from service.runtime.session import SessionConfig, create_session

Runner = Callable[[Feeds], object]


@dataclass(frozen=True)
class BenchPlan:
    seq_lens: tuple[int, ...]
    batch_sizes: tuple[int, ...]
    threads: int
    runs: int


def ort_runner(graph: Path, threads: int) -> Runner:
    session = create_session(graph, SessionConfig(intra_op_threads=threads))
    declared = [i.name for i in session.get_inputs()]
    return lambda feeds: session.run(None, {k: feeds[k] for k in declared})


def torch_runner(model: Any, threads: int) -> Runner:
    import torch

    torch.set_num_threads(threads)

    def run(feeds: Feeds) -> object:
        with torch.inference_mode():
            return model(**{k: torch.from_numpy(v) for k, v in feeds.items()})

    return run


def run_plan(variants: dict[str, Runner], plan: BenchPlan) -> list[Measurement]:
    results = []
    for seq_len in plan.seq_lens:
        for batch in plan.batch_sizes:
            for name, runner in variants.items():
                m = measure(name, runner, seq_len, batch, plan.runs)
                print(
                    f"{name:34s} seq {seq_len:4d} batch {batch:3d}: {m.median_ms:9.2f} ms  {m.seq_per_s:8.1f} seq/s",
                    file=sys.stderr,
                    flush=True,
                )
                results.append(m)
    return results


def store_variants(model_dirs: list[Path], threads: int) -> dict[str, Runner]:
    from service.manifest import read_manifest

    variants: dict[str, Runner] = {}
    for model_dir in model_dirs:
        manifest = read_manifest(model_dir)
        variants[f"{manifest.name} ({manifest.precision})"] = ort_runner(model_dir / manifest.graph_file, threads)
        reference = manifest.extra.get("reference_graph")
        if reference and (model_dir / reference).is_file():
            variants[f"{manifest.name} (fp32 reference)"] = ort_runner(model_dir / reference, threads)
    return variants


def base_size_variants(work: Path, threads: int) -> dict[str, Runner]:
    """Export one untrained base-size classifier every way we compare, all from the same weights."""
    from service.export.baselines import export_plain, quantize_plain_default
    from service.export.checkpoint import load_checkpoint
    from service.export.demo import BASE_SHAPE, write_random_checkpoint
    from service.export.exporter import ExportRequest, export_model
    from service.export.progress import Progress

    task = "sequence-classification"
    checkpoint = write_random_checkpoint(work / "checkpoint", task, BASE_SHAPE)
    model = load_checkpoint(str(checkpoint), task).model
    plain = export_plain(model, work / "plain.onnx")
    plain_int8 = quantize_plain_default(plain, work / "plain-quantize-dynamic.onnx")
    quiet = Progress(5, enabled=False)
    static = export_model(ExportRequest(str(checkpoint), task, "static", work / "store"), quiet)
    dynamic = export_model(
        ExportRequest(str(checkpoint), task, "dynamic", work / "store", quantization="dynamic"), quiet
    )
    return {
        "PyTorch eager fp32": torch_runner(model, threads),
        "ORT fp32, plain torch.onnx.export": ort_runner(plain, threads),
        "ORT int8, default quantize_dynamic": ort_runner(plain_int8, threads),
        "ORT fp32, squeezeserve graph": ort_runner(static / "model.fp32.onnx", threads),
        "ORT int8 dynamic, squeezeserve": ort_runner(dynamic / "model.onnx", threads),
        "ORT int8 static, squeezeserve (served)": ort_runner(static / "model.onnx", threads),
    }


def bench(model_dirs: list[Path], base_size: bool, plan: BenchPlan) -> tuple[list[Measurement], dict[str, str]]:
    with tempfile.TemporaryDirectory(prefix="squeezeserve-bench-") as tmp:
        variants = store_variants(model_dirs, plan.threads)
        if base_size:
            variants.update(base_size_variants(Path(tmp), plan.threads))
        return run_plan(variants, plan), machine_details()
