"""Calibration and held-out text: the bundled set split in two, user files, tokenized feed batches.

The bundled text is split line by line into a calibration half and a held-out half, so the
int8-vs-fp32 figures the export gates on come from text calibration never saw.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from service.export.errors import ExportError

Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class Sample:
    text: str
    text_pair: str | None = None


def default_texts() -> list[str]:
    data = resources.files("service.export").joinpath("data/calibration.txt").read_text(encoding="utf-8")
    return [line.strip() for line in data.splitlines() if line.strip()]


def read_calibration_file(path: Path, kind: str = "calibration") -> list[Sample]:
    """One sample per line; a tab separates a text pair (e.g. question<TAB>context)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ExportError(f"cannot read {kind} file {path}: {exc}") from exc
    samples = [Sample(*line.split("\t", 1)) if "\t" in line else Sample(line) for line in lines if line.strip()]
    if len(samples) < 8:
        raise ExportError(f"{kind} file {path} has {len(samples)} non-empty lines; give at least 8")
    return samples


def default_samples() -> list[Sample]:
    """The calibration half of the bundled text (even lines)."""
    return _layouts(default_texts()[0::2])


def held_out_samples() -> list[Sample]:
    """The other half (odd lines): the int8 figures are measured here, never on calibration text."""
    return _layouts(default_texts()[1::2])


def _layouts(texts: list[str]) -> list[Sample]:
    """Single texts, sentence pairs, and question/long-context pairs, so every segment layout is seen."""
    singles = [Sample(t) for t in texts]
    pairs = [Sample(a, b) for a, b in zip(texts[::2], texts[1::2])]
    questions = [t for t in texts if t.endswith("?")]
    contexts = [" ".join(texts[i : i + 8]) for i in range(0, len(texts), 8)]
    long_pairs = [Sample(q, c) for q, c in zip(questions, contexts)]
    return singles + pairs + long_pairs


def batches(tokenizer: Any, samples: list[Sample], max_seq_len: int, batch_size: int = 8) -> Iterator[Feeds]:
    """Tokenize with padding to the longest row of each batch (so padded rows are calibrated too)."""
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        texts = [s.text for s in chunk]
        pairs = [s.text_pair or "" for s in chunk] if any(s.text_pair for s in chunk) else None
        enc = tokenizer(texts, pairs, padding=True, truncation=True, max_length=max_seq_len, return_tensors="np")
        yield {
            "input_ids": enc["input_ids"].astype(np.int64),
            "attention_mask": enc["attention_mask"].astype(np.int64),
            "token_type_ids": enc.get("token_type_ids", np.zeros_like(enc["input_ids"])).astype(np.int64),
        }
