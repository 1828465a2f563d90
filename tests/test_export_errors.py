"""Export refuses bad input with one clear line and never leaves a half-written model behind."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import onnx
import pytest
from onnx import numpy_helper

from service.export import exporter
from service.export.errors import ExportError
from service.export.exporter import ExportRequest, export_model
from service.export.progress import Progress
from service.manifest import read_manifest


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "service", "export", "--quiet", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def _error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("squeezeserve export: error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_missing_path(tmp_path: Path) -> None:
    line = _error_line(
        _cli("--model", str(tmp_path / "nope"), "--task", "question-answering", "--store", str(tmp_path))
    )
    assert "not a directory" in line and "nope" in line


def test_unknown_hub_id_offline(tmp_path: Path) -> None:
    line = _error_line(
        _cli("--model", "squeezebert/no-such-model", "--task", "question-answering", "--store", str(tmp_path))
    )
    assert "squeezebert/no-such-model" in line


def test_not_squeezebert(tmp_path: Path) -> None:
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    BertForSequenceClassification(config).save_pretrained(tmp_path / "bert")
    line = _error_line(
        _cli("--model", str(tmp_path / "bert"), "--task", "sequence-classification", "--store", str(tmp_path / "s"))
    )
    assert "not a SqueezeBERT checkpoint" in line and "'bert'" in line


def test_task_head_mismatch(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    ckpt = str(checkpoints["sequence-classification"])
    line = _error_line(_cli("--model", ckpt, "--task", "question-answering", "--store", str(tmp_path)))
    assert "task/head mismatch" in line and "SqueezeBertForSequenceClassification" in line
    assert list(tmp_path.iterdir()) == []


def test_unwritable_store(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    ckpt = str(checkpoints["sequence-classification"])
    line = _error_line(_cli("--model", ckpt, "--task", "sequence-classification", "--store", str(blocker / "store")))
    assert "not writable" in line


def test_max_seq_len_out_of_range(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    ckpt = str(checkpoints["sequence-classification"])
    line = _error_line(
        _cli("--model", ckpt, "--task", "sequence-classification", "--store", str(tmp_path), "--max-seq-len", "4096")
    )
    assert "--max-seq-len 4096" in line


def test_cli_success_prints_the_model_dir(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    ckpt = str(checkpoints["token-classification"])
    result = _cli("--model", ckpt, "--task", "token-classification", "--name", "ner", "--store", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "ner")
    assert read_manifest(tmp_path / "ner").task == "token-classification"


def _request(checkpoints: dict[str, Path], store: Path, replace: bool = False) -> ExportRequest:
    task = "sequence-classification"
    return ExportRequest(str(checkpoints[task]), task, "m", store, replace=replace)


SAVE = exporter._save


def _corrupting_save(monkeypatch: pytest.MonkeyPatch, delta: float) -> list[str]:
    """The exporter writes its fp32 graph as usual; then one weight of one initializer is changed
    in the file on disk (a graph-builder bug or a bad write), the first matrix a MatMul/Gemm
    multiplies by, which every token passes through. Returns the initializers changed."""
    changed: list[str] = []

    def save_then_corrupt(model: onnx.ModelProto, path: Path) -> None:
        SAVE(model, path)
        graph = onnx.load(str(path))
        weights = {node.input[1] for node in graph.graph.node if node.op_type in ("MatMul", "Gemm")}
        target = next(i for i in graph.graph.initializer if i.name in weights and len(i.dims) == 2)
        array = numpy_helper.to_array(target).copy()
        array[0, 0] += delta
        target.CopyFrom(numpy_helper.from_array(array, target.name))
        onnx.save(graph, str(path))
        changed.append(target.name)

    monkeypatch.setattr(exporter, "_save", save_then_corrupt)
    return changed


def test_the_parity_gate_refuses_a_graph_with_one_corrupted_weight_and_writes_nothing(
    tmp_path: Path, checkpoints: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    request = replace(_request(checkpoints, tmp_path / "refused"), precision="fp32")
    changed = _corrupting_save(monkeypatch, delta=0.05)
    with pytest.raises(ExportError, match="parity gate failed: fp32 ONNX differs from PyTorch by") as info:
        export_model(request, Progress(5, enabled=False))
    assert changed and float(str(info.value).split(" by ")[1].split()[0]) > 1e-4
    assert list((tmp_path / "refused").iterdir()) == []  # no model dir, no staging dir
    # The same path with the weight left as it was (re-saved all the same) passes the gate.
    _corrupting_save(monkeypatch, delta=0.0)
    entry = export_model(replace(request, store=tmp_path / "control"), Progress(5, enabled=False))
    assert read_manifest(entry).parity.fp32_vs_torch_max_abs <= 1e-4


def test_failed_replace_keeps_the_old_model(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    first = export_model(_request(checkpoints, tmp_path), Progress(5, enabled=False))
    before = read_manifest(first).graph_sha256
    with pytest.raises(ExportError, match="already exists"):
        export_model(_request(checkpoints, tmp_path), Progress(5, enabled=False))
    unreachable = replace(_request(checkpoints, tmp_path, replace=True), max_prob_delta=0.0)  # a real int8 gate failure
    with pytest.raises(ExportError, match="not close enough to fp32"):
        export_model(unreachable, Progress(5, enabled=False))
    assert [p.name for p in tmp_path.iterdir()] == ["m"]
    assert read_manifest(first).graph_sha256 == before


def test_invalid_model_name(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    request = ExportRequest(str(checkpoints["question-answering"]), "question-answering", "../escape", tmp_path)
    with pytest.raises(ExportError, match="invalid model name"):
        export_model(request, Progress(5, enabled=False))
