"""Reads a model store directory: finds entries, validates each, reports the broken ones."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.manifest import Manifest, ManifestError, read_manifest
from service.runtime.layout import make_feeds
from service.runtime.ort_runtime import OrtRuntime
from service.runtime.session import SessionConfig
from service.tokenization import TextTokenizer


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


@dataclass(frozen=True)
class OpenedEntry:
    manifest: Manifest
    tokenizer: TextTokenizer
    runtimes: list[OrtRuntime]


def open_entry(path: Path, session_config: SessionConfig | None = None, instances: int = 1) -> OpenedEntry:
    """Everything the server needs from an entry, checked: the one loader `validate` and serving share.

    Manifest and graph hash, the directory name, tokenizer, `instances` ORT sessions whose inputs
    and outputs match the manifest, and one finite inference. Any failure is one ManifestError line.
    """
    manifest = read_manifest(path)
    if manifest.name != path.name:
        raise ManifestError(f"{path}: manifest names the model {manifest.name!r}, not {path.name!r}")
    config = session_config or SessionConfig()
    try:
        tokenizer = TextTokenizer.from_file(path / manifest.tokenizer_file, manifest.max_seq_len)
        runtimes = [_runtime(path, manifest, config) for _ in range(instances)]
    except Exception as exc:  # ORT and tokenizers raise their own types; one line says which model
        raise ManifestError(f"{path}: cannot load: {str(exc).splitlines()[0] if str(exc) else exc!r}") from exc
    feeds = make_feeds(manifest.layout, [tokenizer.encode("warm up").row().feeds()], {"input_ids": tokenizer.pad_id})
    if not all(np.isfinite(output).all() for output in runtimes[0].run(feeds)):
        raise ManifestError(f"{path}: the graph produces non-finite outputs")
    return OpenedEntry(manifest, tokenizer, runtimes)


def _runtime(path: Path, manifest: Manifest, config: SessionConfig) -> OrtRuntime:
    return OrtRuntime(path / manifest.graph_file, config, manifest.input_names, manifest.output_names, manifest.layout)


def one_core_runtime(path: Path, manifest: Manifest, config: SessionConfig) -> OrtRuntime:
    """A second session on an opened entry's graph with one intra-op thread (runs side by side)."""
    return _runtime(path, manifest, dataclasses.replace(config, intra_op_threads=1))


def validate_entry(path: Path) -> StoreEntry:
    return StoreEntry(path, open_entry(path).manifest)


def scan_store(store: Path) -> tuple[list[StoreEntry], list[BrokenEntry]]:
    good: list[StoreEntry] = []
    broken: list[BrokenEntry] = []
    for path in entry_dirs(store):
        try:
            good.append(validate_entry(path))
        except ManifestError as exc:
            broken.append(BrokenEntry(path, str(exc)))
    return good, broken
