"""The serving side reads the store without torch/transformers and isolates broken entries."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from service.store import scan_store
from tests.conftest import TINY_MAX_PROB_DELTA


def test_serving_side_never_imports_torch_or_transformers(store: Path) -> None:
    code = (
        "import sys, pathlib\n"
        "from service.cli import main\n"
        f"rc = main(['validate', '--store', {str(store)!r}])\n"
        "leaked = sorted(m for m in ('torch', 'transformers', 'onnx') if m in sys.modules)\n"
        "print('LEAKED', leaked, 'RC', rc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "LEAKED [] RC 0" in result.stdout, result.stdout + result.stderr
    assert "validated: 3 model(s)" in result.stderr


def test_broken_entries_are_reported_and_others_still_load(tmp_path: Path, store: Path) -> None:
    for name in ("sequence-classification", "question-answering"):
        shutil.copytree(store / name, tmp_path / name)
    manifest = tmp_path / "question-answering" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["graph_sha256"] = "0" * 64
    manifest.write_text(json.dumps(data))
    (tmp_path / "junk").mkdir()
    (tmp_path / ".half-written.staging-x").mkdir()
    good, broken = scan_store(tmp_path)
    assert [e.manifest.name for e in good] == ["sequence-classification"]
    reasons = {b.path.name: b.reason for b in broken}
    assert set(reasons) == {"question-answering", "junk"}
    assert "sha256" in reasons["question-answering"] and "manifest.json" in reasons["junk"]


def test_serve_fails_clearly_on_an_empty_store(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service", "validate", "--store", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "no servable model" in result.stderr


def test_demo_store_builds_and_validates(tmp_path: Path) -> None:
    """The path `make serve` takes on an empty store (with the tiny shape to stay fast)."""
    store = tmp_path / "store"
    build = subprocess.run(
        [sys.executable, "-m", "service", "export", "--demo", "--demo-size", "tiny", "--quiet", "--store", str(store)]
        + ["--max-prob-delta", str(TINY_MAX_PROB_DELTA)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    assert sorted(p.name for p in store.iterdir()) == ["demo-classify", "demo-ner", "demo-qa"]
    assert "UNTRAINED" in build.stderr
    serve = subprocess.run(
        [sys.executable, "-m", "service", "validate", "--store", str(store)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert serve.returncode == 0, serve.stderr
    assert serve.stdout.count("UNTRAINED demo weights") == 3


def test_validate_applies_the_servers_checks(tmp_path: Path, store: Path) -> None:
    """`validate` and the server share one loader, so they cannot disagree about an entry."""
    shutil.copytree(store / "sequence-classification", tmp_path / "renamed")
    shutil.copytree(store / "question-answering", tmp_path / "question-answering")
    manifest = tmp_path / "question-answering" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["input_names"] = ["input_ids", "attention_mask"]  # the graph also takes token_type_ids
    manifest.write_text(json.dumps(data))
    good, broken = scan_store(tmp_path)
    assert good == []
    reasons = {b.path.name: b.reason for b in broken}
    assert "manifest names the model 'sequence-classification'" in reasons["renamed"]
    assert "token_type_ids" in reasons["question-answering"]
