"""The model store entry's manifest: what a served model is, read and written as manifest.json."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from service.runtime.layout import LAYOUTS

TASKS = ("sequence-classification", "token-classification", "question-answering")
PRECISIONS = ("int8", "fp32")
MANIFEST_FILE = "manifest.json"
GRAPH_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
FORMAT_VERSION = 1


class ManifestError(Exception):
    """A model directory is missing, corrupt or incompatible; the message names the problem."""


@dataclass(frozen=True)
class Int8Accuracy:
    """The served int8 graph against the fp32 graph on held-out text (what the export gate checked).

    A decision (`unit`) is a row's label, a real token's label, or a QA row's best span; decisive
    ones are those where fp32's top-1 probability leads the runner-up by the export's margin.
    """

    eval_source: str
    rows: int
    unit: str
    decisions: int
    decisive: int
    agreement: float
    decisive_agreement: float
    max_prob_delta: float
    max_logit_delta: float
    entity_f1: float | None = None  # token classification: entities from int8 tags vs fp32 tags
    start_end_agreement: float | None = None  # question answering: argmax start and end separately


# Written by exports before held-out measurement (figures on calibration samples); dropped on read.
_LEGACY_PARITY_KEYS = ("int8_vs_fp32_max_abs", "int8_vs_fp32_top1_agreement")


@dataclass(frozen=True)
class Parity:
    """Export-time figures: fp32 graph vs PyTorch, int8 vs fp32 on held-out text, batch invariance."""

    samples: int
    fp32_vs_torch_max_abs: float
    int8_vs_fp32: Int8Accuracy | None = None
    int8_batch_invariance_max_abs: float | None = None

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Parity:
        fields = {k: v for k, v in data.items() if k not in _LEGACY_PARITY_KEYS}
        if fields.get("int8_vs_fp32") is not None:
            fields["int8_vs_fp32"] = Int8Accuracy(**fields["int8_vs_fp32"])
        return Parity(**fields)


@dataclass(frozen=True)
class Manifest:
    name: str
    task: str
    id2label: dict[int, str]
    problem_type: str | None
    max_seq_len: int
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    precision: str
    quantization: dict[str, Any] | None
    source: dict[str, Any]
    graph_sha256: str
    parity: Parity
    trained: bool
    architecture: dict[str, Any]
    graph_file: str = GRAPH_FILE
    tokenizer_file: str = TOKENIZER_FILE
    format_version: int = FORMAT_VERSION
    # How the graph takes a batch (service/runtime/layout.py); stores written before packing: padded.
    layout: str = "padded"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    def to_json(self) -> str:
        data = asdict(self)
        data["id2label"] = {str(k): v for k, v in self.id2label.items()}
        return json.dumps(data, indent=2, sort_keys=True) + "\n"


def manifest_from_dict(data: dict[str, Any]) -> Manifest:
    """Validate and convert parsed JSON; raises ManifestError on anything unexpected."""
    try:
        version = int(data.get("format_version", -1))
        if version != FORMAT_VERSION:
            raise ManifestError(f"manifest format_version {version} is not supported (expected {FORMAT_VERSION})")
        task = str(data["task"])
        if task not in TASKS:
            raise ManifestError(f"unknown task {task!r} (expected one of {', '.join(TASKS)})")
        precision = str(data["precision"])
        if precision not in PRECISIONS:
            raise ManifestError(f"unknown precision {precision!r}")
        layout = str(data.get("layout", "padded"))
        if layout not in LAYOUTS:
            raise ManifestError(f"unknown layout {layout!r} (expected one of {', '.join(LAYOUTS)})")
        fields = dict(data)
        fields["id2label"] = {int(k): str(v) for k, v in data["id2label"].items()}
        fields["input_names"] = tuple(data["input_names"])
        fields["output_names"] = tuple(data["output_names"])
        fields["parity"] = Parity.from_dict(data["parity"])
        fields["max_seq_len"] = int(data["max_seq_len"])
        return Manifest(**fields)
    except ManifestError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ManifestError(f"manifest is malformed: {type(exc).__name__}: {exc}") from exc


def _is_plain_file_name(name: str) -> bool:
    """No separators, no parent or current directory, not absolute: the file is in the entry itself."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name and "\0" not in name


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(model_dir: Path, verify_graph: bool = True) -> Manifest:
    """Load `model_dir/manifest.json`, check the files it names exist and the graph hash matches."""
    path = model_dir / MANIFEST_FILE
    if not path.is_file():
        raise ManifestError(f"{model_dir}: no {MANIFEST_FILE}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path}: unreadable manifest ({exc})") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: manifest is not a JSON object")
    manifest = manifest_from_dict(data)
    for name in (manifest.graph_file, manifest.tokenizer_file):
        if not _is_plain_file_name(name):
            raise ManifestError(f"{path}: {name!r} must be a file name inside the entry, not a path")
        if not (model_dir / name).is_file():
            raise ManifestError(f"{model_dir}: missing {name}")
    if verify_graph and sha256_file(model_dir / manifest.graph_file) != manifest.graph_sha256:
        raise ManifestError(f"{model_dir}: {manifest.graph_file} does not match the sha256 in the manifest")
    return manifest
