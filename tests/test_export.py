"""Export on tiny real-architecture checkpoints: parity, manifest, int8 graph shape, invariance."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from transformers import AutoTokenizer

from service.export.calibration import Sample, batches
from service.export.checkpoint import load_checkpoint
from service.export.exporter import ExportRequest, export_model
from service.export.parity import run_onnx
from service.export.progress import Progress
from service.manifest import read_manifest, sha256_file
from service.runtime.session import create_session

OUTPUTS = {
    "sequence-classification": ["logits"],
    "token-classification": ["logits"],
    "question-answering": ["start_logits", "end_logits"],
}
TEXTS = [
    Sample("Short one."),
    Sample("Émile moved to Québec with Zoë in 2019, then to Zürich.", "Where did they move first?"),
    Sample("a " * 60 + "long padded row"),
    Sample("Who signed the treaty?", "The treaty was signed in Vienna by eleven countries in 1815."),
]


def _feeds(tokenizer: object, samples: list[Sample]) -> dict[str, np.ndarray]:
    return next(batches(tokenizer, samples, 128, batch_size=len(samples)))


def _op_types(path: Path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


@pytest.mark.parametrize("task", list(OUTPUTS))
def test_fp32_graph_matches_pytorch_on_fresh_inputs(task: str, store: Path, checkpoints: dict[str, Path]) -> None:
    model = load_checkpoint(str(checkpoints[task]), task).model
    tokenizer = AutoTokenizer.from_pretrained(checkpoints[task])
    feeds = _feeds(tokenizer, TEXTS)
    assert feeds["attention_mask"].min() == 0 and feeds["token_type_ids"].max() == 1  # padding and pairs covered
    session = create_session(store / task / "model.fp32.onnx")
    got = run_onnx(session, feeds)  # the graph's layout; outputs laid back as [rows, longest, ...]
    with torch.inference_mode():
        expected = model(**{k: torch.from_numpy(v) for k, v in feeds.items()})
    real = feeds["attention_mask"].astype(bool)
    for name, value in zip(OUTPUTS[task], got):
        reference = expected[name].numpy()
        if task != "sequence-classification":  # pads carry no answer in a packed graph
            value, reference = value[real], reference[real]
        np.testing.assert_allclose(value, reference, atol=1e-4, rtol=0)


@pytest.mark.parametrize("task", list(OUTPUTS))
def test_manifest_describes_the_export(task: str, store: Path, checkpoints: dict[str, Path]) -> None:
    manifest = read_manifest(store / task)
    raw = json.loads((store / task / "manifest.json").read_text())
    assert manifest.task == task and manifest.name == task
    assert manifest.id2label == {int(k): v for k, v in raw["id2label"].items()}
    assert len(manifest.id2label) == (2 if task != "token-classification" else 9)
    assert manifest.input_names == ("input_ids", "attention_mask", "token_type_ids")
    assert list(manifest.output_names) == OUTPUTS[task]
    assert manifest.max_seq_len == 512 and manifest.precision == "int8"
    assert manifest.quantization is not None and manifest.quantization["scheme"] == "static"
    assert manifest.quantization["batch_invariant"] is True
    assert manifest.source["model"] == str(checkpoints[task])
    assert manifest.graph_sha256 == sha256_file(store / task / "model.onnx")
    assert manifest.trained is False  # random-init checkpoints carry the untrained marker
    assert manifest.parity.fp32_vs_torch_max_abs <= 1e-4
    assert manifest.parity.int8_vs_fp32_top1_agreement is not None
    assert manifest.parity.int8_batch_invariance_max_abs == pytest.approx(0.0, abs=1e-5)
    assert (store / task / "tokenizer.json").is_file()


@pytest.mark.parametrize("task", list(OUTPUTS))
def test_int8_graph_uses_integer_matmuls_and_no_convolutions(task: str, store: Path) -> None:
    ops = _op_types(store / task / "model.onnx")
    assert "MatMulIntegerToFloat" in ops
    assert not ops & {"ConvInteger", "Conv", "QLinearConv"}
    graph = onnx.load(str(store / task / "model.onnx"))
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
    dims = {t.name: [d.dim_param for d in t.type.tensor_type.shape.dim] for t in graph.graph.input}
    # Packed: real tokens only, concatenated; the mask maps them to rows (service/runtime/layout.py).
    assert dims == {"input_ids": ["tokens"], "token_type_ids": ["tokens"], "attention_mask": ["batch", "sequence"]}


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("task", ["sequence-classification", "token-classification"])
def test_int8_results_do_not_depend_on_batch_neighbours(task: str, store: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(store / task)
    session = create_session(store / task / "model.onnx")
    samples = TEXTS + [Sample("x" * 3), Sample("Another medium sized sentence about the weather in Lagos.")]
    rng = np.random.default_rng(0)
    for trial in range(4):
        order = rng.permutation(len(samples))
        batch = [samples[i] for i in order[: 2 + trial]]
        feeds = _feeds(tokenizer, batch)
        together = run_onnx(session, feeds)[0]
        for row, _ in enumerate(batch):
            length = int(feeds["attention_mask"][row].sum())
            alone = run_onnx(session, {k: v[row : row + 1, :length] for k, v in feeds.items()})[0][0]
            mine = together[row] if task == "sequence-classification" else together[row, :length]
            # Static int8 on a packed graph: a row's numbers are the same alone or in any batch.
            np.testing.assert_array_equal(mine, alone)


@pytest.mark.parametrize("task", list(OUTPUTS))
def test_packed_and_padded_graphs_compute_the_same_rows(
    task: str, store: Path, checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    """The packed layout (real tokens only) is the padded graph's maths, not an approximation."""
    request = ExportRequest(str(checkpoints[task]), task, "padded", tmp_path, precision="fp32", layout="padded")
    padded = export_model(request, Progress(5, enabled=False))
    assert read_manifest(padded).layout == "padded" and read_manifest(store / task).layout == "packed"
    feeds = _feeds(AutoTokenizer.from_pretrained(checkpoints[task]), TEXTS)
    real = feeds["attention_mask"].astype(bool)
    packed_out = run_onnx(create_session(store / task / "model.fp32.onnx"), feeds)
    padded_out = run_onnx(create_session(padded / "model.onnx"), feeds)
    for a, b in zip(packed_out, padded_out):
        if task != "sequence-classification":
            a, b = a[real], b[real]
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_fp32_precision_serves_the_plain_graph(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    task = "sequence-classification"
    out = export_model(
        ExportRequest(str(checkpoints[task]), task, "fp", tmp_path, precision="fp32"), Progress(5, enabled=False)
    )
    manifest = read_manifest(out)
    assert manifest.precision == "fp32" and manifest.quantization is None
    assert "MatMulIntegerToFloat" not in _op_types(out / "model.onnx")
    assert not (out / "model.fp32.onnx").exists()


def test_exported_entries_are_readable_by_any_user_whatever_the_umask(
    tmp_path: Path, checkpoints: dict[str, Path]
) -> None:
    """The image's server (uid 10001) reads entries a root exporter wrote, even under umask 077."""
    task = "sequence-classification"
    store = tmp_path / "new-store"
    old = os.umask(0o077)
    try:
        export_model(ExportRequest(str(checkpoints[task]), task, "m", store), Progress(5, enabled=False))
        # A replaced entry goes through a fresh 0700 staging directory too.
        export_model(ExportRequest(str(checkpoints[task]), task, "m", store, replace=True), Progress(5, enabled=False))
    finally:
        os.umask(old)
    modes = {p.relative_to(store).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in [store, *store.rglob("*")]}
    assert modes.pop(".") == 0o755
    assert modes.pop("m") == 0o755
    assert {"m/model.onnx", "m/tokenizer.json", "m/manifest.json"} <= set(modes)
    assert set(modes.values()) == {0o644}, modes


def test_dynamic_quantization_is_an_explicit_option(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    task = "sequence-classification"
    out = export_model(
        ExportRequest(str(checkpoints[task]), task, "dyn", tmp_path, quantization="dynamic"),
        Progress(5, enabled=False),
    )
    manifest = read_manifest(out)
    assert manifest.quantization is not None and manifest.quantization["batch_invariant"] is False
    assert "DynamicQuantizeMatMul" in _op_types(out / "model.onnx")
    # The trade-off the manifest states is real: a row's logits move with its batch neighbours.
    assert manifest.parity.int8_batch_invariance_max_abs is not None
    assert manifest.parity.int8_batch_invariance_max_abs > 1e-4


def test_custom_calibration_file_and_max_seq_len(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    task = "question-answering"
    calibration = tmp_path / "calib.txt"
    lines = [f"What is item {i}?\tItem {i} is a thing described in sentence number {i}." for i in range(12)]
    calibration.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = export_model(
        ExportRequest(str(checkpoints[task]), task, "qa", tmp_path / "store", max_seq_len=256, calibration=calibration),
        Progress(5, enabled=False),
    )
    manifest = read_manifest(out)
    assert manifest.max_seq_len == 256
    assert manifest.quantization is not None
    assert manifest.quantization["calibration"] == {"source": str(calibration), "samples": 12}


def test_trained_flag_comes_from_the_checkpoint(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    import shutil

    task = "sequence-classification"
    trained = tmp_path / "trained"
    shutil.copytree(checkpoints[task], trained)
    config = json.loads((trained / "config.json").read_text())
    del config["squeezeserve_untrained"]
    (trained / "config.json").write_text(json.dumps(config))
    out = export_model(ExportRequest(str(trained), task, "t", tmp_path / "store"), Progress(5, enabled=False))
    assert read_manifest(out).trained is True
