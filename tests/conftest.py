"""Shared fixtures: tiny random-init SqueezeBERT checkpoints (real architecture) and their exports."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from service.export.demo import TINY_SHAPE, write_random_checkpoint
from service.export.exporter import ExportRequest, export_model
from service.export.progress import Progress

IMAGE_REPORT = Path(__file__).resolve().parent.parent / ".image-test-report.json"  # tests/test_image.py

TASKS = ("sequence-classification", "token-classification", "question-answering")


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    return {task: write_random_checkpoint(root / task, task, TINY_SHAPE, seed=i) for i, task in enumerate(TASKS)}


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """One int8 (static) export per task, named after the task.

    SQZ_TEST_STORE names a directory to keep it in across sessions (scripts/mutation.py runs
    thousands of short sessions); it is filled on first use and read-only after that.
    """
    kept = os.environ.get("SQZ_TEST_STORE")
    if kept and all((Path(kept) / task / "manifest.json").exists() for task in TASKS):
        return Path(kept)
    root = Path(kept) if kept else tmp_path_factory.mktemp("store")
    checkpoints: dict[str, Path] = request.getfixturevalue("checkpoints")
    for task, checkpoint in checkpoints.items():
        export_model(ExportRequest(str(checkpoint), task, task, root), Progress(5, enabled=False))
    return root


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # never leave a worker thread blocked at interpreter exit


@pytest.fixture(scope="session")
def tokenizer(store: Path) -> Tokenizer:
    return Tokenizer.from_file(str(store / "sequence-classification" / "tokenizer.json"))


def pytest_sessionstart(session: pytest.Session) -> None:
    IMAGE_REPORT.unlink(missing_ok=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The image test's figures (build time, time to ready, sizes, drain counts) in the summary."""
    if IMAGE_REPORT.exists():
        terminalreporter.write_line("image test figures: " + " ".join(IMAGE_REPORT.read_text().split()))
