"""Loads a SqueezeBERT checkpoint (hub id or local directory) with transformers' from_pretrained."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.export.errors import ExportError

HEAD_CLASSES = {
    "sequence-classification": "SqueezeBertForSequenceClassification",
    "token-classification": "SqueezeBertForTokenClassification",
    "question-answering": "SqueezeBertForQuestionAnswering",
}
# Set in config.json of checkpoints made by squeezeserve from random weights (demo and tests).
UNTRAINED_MARKER = "squeezeserve_untrained"


@dataclass(frozen=True)
class Checkpoint:
    model: Any  # a SqueezeBertFor<Task> in eval mode
    tokenizer: Any  # a fast tokenizer
    source: str
    trained: bool


def _looks_local(source: str) -> bool:
    """Hub ids are `name` or `org/name`; anything path-shaped is treated as a local directory."""
    return source.startswith((".", "/", "~")) or source.count("/") > 1 or Path(source).exists()


def _load_config(source: str) -> Any:
    from transformers import AutoConfig

    if _looks_local(source) and not Path(source).expanduser().is_dir():
        raise ExportError(f"checkpoint not found: {source} is not a directory")
    try:
        return AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"cannot load a model config from {source!r}: {first_line}") from exc


def _check_head(config: Any, task: str) -> None:
    if config.model_type != "squeezebert":
        raise ExportError(f"not a SqueezeBERT checkpoint: model_type is {config.model_type!r}")
    wanted = HEAD_CLASSES[task]
    architectures = list(getattr(config, "architectures", None) or [])
    if wanted in architectures:
        return
    others = [a for a in architectures if a.startswith("SqueezeBertFor")]
    if others:
        raise ExportError(f"task/head mismatch: the checkpoint has a {others[0]} head, task {task} needs {wanted}")
    raise ExportError(
        f"task/head mismatch: the checkpoint has no {wanted} head (architectures: {architectures or 'none'}); "
        "fine-tune it for the task first"
    )


def load_checkpoint(source: str, task: str) -> Checkpoint:
    """Config checks first (cheap, clear errors), then the real weights and fast tokenizer."""
    import transformers
    from transformers import AutoTokenizer

    if task not in HEAD_CLASSES:
        raise ExportError(f"unknown task {task!r} (expected one of {', '.join(HEAD_CLASSES)})")
    config = _load_config(source)
    _check_head(config, task)
    model_class = getattr(transformers, HEAD_CLASSES[task])
    try:
        model, info = model_class.from_pretrained(source, output_loading_info=True)
        tokenizer = AutoTokenizer.from_pretrained(source, use_fast=True)
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot load {source!r}: {str(exc).strip().splitlines()[0]}") from exc
    if info.get("missing_keys"):
        raise ExportError(f"checkpoint {source!r} lacks weights for: {', '.join(info['missing_keys'][:4])}")
    if not tokenizer.is_fast:
        raise ExportError(f"{source!r} has no fast tokenizer (tokenizer.json); squeezeserve needs one")
    return Checkpoint(model.eval(), tokenizer, source, trained=not getattr(config, UNTRAINED_MARKER, False))
