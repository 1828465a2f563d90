"""Export refuses bad input with one clear line and never leaves a half-written model behind."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

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


def test_failure_midway_leaves_nothing(
    tmp_path: Path, checkpoints: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> float:
        raise ExportError("parity gate failed: simulated")

    monkeypatch.setattr(exporter, "_check_fp32", broken)
    with pytest.raises(ExportError, match="simulated"):
        export_model(_request(checkpoints, tmp_path), Progress(5, enabled=False))
    assert list(tmp_path.iterdir()) == []  # no model dir, no staging dir


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
