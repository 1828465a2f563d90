"""Graphs a user would get without squeezeserve, kept for the benchmark's comparisons."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from service.export.graph import INPUT_NAMES, OPSET


def export_plain(model: Any, path: Path) -> Path:
    """torch.onnx.export of the unmodified transformers model (Conv1d graph, fp32)."""
    import torch

    ids = torch.ones((1, 16), dtype=torch.long)
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (ids, torch.ones_like(ids), torch.zeros_like(ids)),
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    return path


def quantize_plain_default(plain: Path, path: Path) -> Path:
    """onnxruntime's quantize_dynamic with default settings: the Conv1d layers become ConvInteger."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)
    quantize_dynamic(str(plain), str(path), weight_type=QuantType.QInt8)
    return path
