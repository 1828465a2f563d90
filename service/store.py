"""Reads a model store directory: finds entries, validates each, reports the broken ones."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from service.manifest import Manifest, ManifestError, read_manifest
from service.runtime.session import SessionConfig, create_session


@dataclass(frozen=True)
class StoreEntry:
    path: Path
    manifest: Manifest


@dataclass(frozen=True)
class BrokenEntry:
    path: Path
    reason: str


def entry_dirs(store: Path) -> list[Path]:
    """Model directories: visible subdirectories (staging dirs of an export in progress are hidden)."""
    if not store.is_dir():
        return []
    return sorted(p for p in store.iterdir() if p.is_dir() and not p.name.startswith("."))


def validate_entry(path: Path, session_config: SessionConfig | None = None) -> StoreEntry:
    """Manifest and hash, tokenizer, ORT session, and one inference with the declared inputs."""
    manifest = read_manifest(path)
    try:
        tokenizer = Tokenizer.from_file(str(path / manifest.tokenizer_file))
        session = create_session(path / manifest.graph_file, session_config)
    except Exception as exc:  # tokenizers and ORT raise their own exception types
        raise ManifestError(f"{path}: cannot load: {exc}") from exc
    declared = [i.name for i in session.get_inputs()]
    if set(declared) - set(manifest.input_names):
        raise ManifestError(f"{path}: graph inputs {declared} do not match the manifest {manifest.input_names}")
    ids = np.array([tokenizer.encode("warm up").ids], dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    outputs = session.run(None, {k: feeds[k] for k in declared})
    if [o.name for o in session.get_outputs()] != list(manifest.output_names) or not all(
        np.isfinite(o).all() for o in outputs
    ):
        raise ManifestError(f"{path}: graph outputs do not match the manifest or are not finite")
    return StoreEntry(path, manifest)


def scan_store(store: Path) -> tuple[list[StoreEntry], list[BrokenEntry]]:
    good: list[StoreEntry] = []
    broken: list[BrokenEntry] = []
    for path in entry_dirs(store):
        try:
            good.append(validate_entry(path))
        except ManifestError as exc:
            broken.append(BrokenEntry(path, str(exc)))
    return good, broken
