"""Builds the served ONNX graph for SqueezeBERT in token-major layout from regrouped weights.

SqueezeBERT computes in channels-first (NCW) layout with 1x1 grouped Conv1d. The same maths in
token-major (NWC) layout is a set of per-group MatMuls with constant weights as the second input,
which quantize to fast int8 GEMM kernels (ConvInteger is slow on AVX2) and need no layout
transposes; q/k/v are packed per head so ORT's fused MultiHeadAttention reads them directly.
How each linear layer is emitted (fp32, calibration taps, int8) is left to a LinearEmitter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from service.export.weights import EncoderLayerWeights, GroupedLinear, LayerNormWeights, SqueezeBertWeights

OPSET = 17
MS_DOMAIN = "com.microsoft"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAMES = {
    "sequence-classification": ("logits",),
    "token-classification": ("logits",),
    "question-answering": ("start_logits", "end_logits"),
}


class GraphBuilder:
    """Accumulates nodes and initializers with unique names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.extra_outputs: list[str] = []
        self._count = 0

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, hint: str, value: np.ndarray) -> str:
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], hint: str = "", domain: str = "", **attrs: Any) -> str:
        return self.op_n(op_type, inputs, 1, hint, domain, **attrs)[0]

    def op_n(
        self, op_type: str, inputs: Sequence[str], n: int, hint: str = "", domain: str = "", **attrs: Any
    ) -> list[str]:
        base = self.fresh(hint or op_type)
        outputs = [f"{base}_out{i}" for i in range(n)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outputs, name=base, domain=domain, **attrs))
        return outputs


class LinearEmitter(Protocol):
    """Emits `x @ weight (+ bias)`; may return the bias unapplied for the caller to fuse."""

    def emit(
        self, g: GraphBuilder, x: str, weight: np.ndarray, bias: np.ndarray, name: str
    ) -> tuple[str, np.ndarray | None]: ...


class Fp32Emitter:
    """Plain MatMul; the bias is handed back so it fuses into BiasGelu / SkipLayerNorm / Add."""

    def emit(
        self, g: GraphBuilder, x: str, weight: np.ndarray, bias: np.ndarray, name: str
    ) -> tuple[str, np.ndarray | None]:
        return g.op("MatMul", [x, g.const(f"{name}.w", weight.astype(np.float32))], hint=name), bias


def _split(g: GraphBuilder, x: str, parts: int, hint: str) -> list[str]:
    if parts == 1:
        return [x]
    return g.op_n("Split", [x], parts, hint=hint, axis=-1)  # opset 17: equal parts from the output count


def _concat(g: GraphBuilder, xs: Sequence[str], hint: str) -> str:
    return xs[0] if len(xs) == 1 else g.op("Concat", xs, hint=hint, axis=-1)


def _grouped(
    g: GraphBuilder, chunks: list[str], lin: GroupedLinear, emitter: LinearEmitter
) -> list[tuple[str, np.ndarray | None]]:
    """Apply a grouped linear to activations already split into chunks (re-split if needed)."""
    if len(chunks) != lin.groups:
        chunks = _split(g, _concat(g, chunks, f"{lin.name}.cat"), lin.groups, f"{lin.name}.split")
    return [
        emitter.emit(g, c, w, b, f"{lin.name}.g{i}") for i, (c, w, b) in enumerate(zip(chunks, lin.weights, lin.biases))
    ]


def _join(g: GraphBuilder, outs: list[tuple[str, np.ndarray | None]], hint: str) -> tuple[str, str | None]:
    """Concatenate group outputs; return (tensor, name of the pending concatenated bias or None)."""
    tensor = _concat(g, [t for t, _ in outs], hint)
    pending = [b for _, b in outs]
    if all(b is None for b in pending):
        return tensor, None
    bias = np.concatenate([b for b in pending if b is not None]).astype(np.float32)
    return tensor, g.const(f"{hint}.bias", bias)


def _add_bias(g: GraphBuilder, x: str, bias: str | None) -> str:
    return x if bias is None else g.op("Add", [x, bias])


def _skip_norm(g: GraphBuilder, x: str, skip: str, bias: str | None, norm: LayerNormWeights, eps: float) -> str:
    inputs = [x, skip, g.const("ln.gamma", norm.gamma), g.const("ln.beta", norm.beta)]
    if bias is not None:
        inputs.append(bias)
    return g.op("SkipLayerNormalization", inputs, domain=MS_DOMAIN, epsilon=eps)


def _attention(
    g: GraphBuilder, x: str, mask: str, layer: EncoderLayerWeights, w: SqueezeBertWeights, emitter: LinearEmitter
) -> str:
    """Q/K/V projections feeding ORT's fused MultiHeadAttention (its CPU kernel wants separate Q, K, V)."""
    if layer.qkv is not None:
        outs = _grouped(g, _split(g, x, layer.qkv.groups, "qkv.split"), layer.qkv, emitter)
        per_part: list[list[tuple[str, np.ndarray | None]]] = [[], [], []]
        for t, b in outs:
            for i, piece in enumerate(_split(g, t, 3, "qkv.parts")):
                per_part[i].append((piece, None if b is None else np.split(b, 3)[i]))
    else:
        per_part = []
        for lin in (layer.query, layer.key, layer.value):
            assert lin is not None
            per_part.append(_grouped(g, _split(g, x, lin.groups, "split"), lin, emitter))
    tensors = [_concat(g, [t for t, _ in outs], "qkv.cat") for outs in per_part]
    biases = [b for outs in per_part for _, b in outs]
    bias = "" if biases[0] is None else g.const("qkv.bias", np.concatenate(biases).astype(np.float32))
    return g.op("MultiHeadAttention", [*tensors, bias, mask], domain=MS_DOMAIN, num_heads=w.num_heads)


def _encoder_layer(
    g: GraphBuilder, x: str, mask: str, layer: EncoderLayerWeights, w: SqueezeBertWeights, emitter: LinearEmitter
) -> str:
    eps = w.layer_norm_eps
    ctx = _attention(g, x, mask, layer, w, emitter)
    post, bias = _join(g, _grouped(g, [ctx], layer.post_attention, emitter), "post")
    x1 = _skip_norm(g, post, x, bias, layer.post_attention_norm, eps)
    hidden = []
    for t, b in _grouped(g, _split(g, x1, layer.intermediate.groups, "ffn.split"), layer.intermediate, emitter):
        if b is None:
            hidden.append(g.op("Gelu", [t], domain=MS_DOMAIN))
        else:
            hidden.append(g.op("BiasGelu", [t, g.const("ffn.bias", b)], domain=MS_DOMAIN))
    out, bias = _join(g, _grouped(g, hidden, layer.output, emitter), "out")
    return _skip_norm(g, out, x1, bias, layer.output_norm, eps)


def _embeddings(g: GraphBuilder, w: SqueezeBertWeights) -> str:
    words = g.op("Gather", [g.const("word_emb", w.word_embeddings), "input_ids"])
    types = g.op("Gather", [g.const("type_emb", w.token_type_embeddings), "token_type_ids"])
    seq_len = g.op("Shape", ["input_ids"], start=1, end=2)
    zero = g.const("zero", np.array([0], dtype=np.int64))
    positions = g.op("Slice", [g.const("pos_emb", w.position_embeddings), zero, seq_len, zero])
    summed = g.op("Add", [g.op("Add", [words, types]), positions])
    norm = w.embedding_norm
    return g.op(
        "LayerNormalization",
        [summed, g.const("emb.gamma", norm.gamma), g.const("emb.beta", norm.beta)],
        axis=-1,
        epsilon=w.layer_norm_eps,
    )


def _linear_fp32(g: GraphBuilder, x: str, weight: np.ndarray, bias: np.ndarray, hint: str) -> str:
    return g.op("Add", [g.op("MatMul", [x, g.const(f"{hint}.w", weight)]), g.const(f"{hint}.b", bias)], hint=hint)


def _head(g: GraphBuilder, hidden: str, w: SqueezeBertWeights, task: str) -> list[str]:
    weight, bias = w.head
    if task == "sequence-classification":
        assert w.pooler is not None
        cls = g.op("Gather", [hidden, g.const("cls", np.array(0, dtype=np.int64))], axis=1)
        pooled = g.op("Tanh", [_linear_fp32(g, cls, w.pooler[0], w.pooler[1], "pooler")])
        return [_linear_fp32(g, pooled, weight, bias, "classifier")]
    logits = _linear_fp32(g, hidden, weight, bias, "classifier")
    if task == "token-classification":
        return [logits]
    start, end = _split(g, logits, 2, "qa.split")
    axes = g.const("axes", np.array([-1], dtype=np.int64))
    return [g.op("Squeeze", [start, axes]), g.op("Squeeze", [end, axes])]


def build_model(w: SqueezeBertWeights, task: str, emitter: LinearEmitter, num_labels: int) -> onnx.ModelProto:
    """The whole graph: embeddings, encoder layers, task head. Dynamic batch and sequence axes."""
    g = GraphBuilder()
    mask = g.op("Cast", ["attention_mask"], to=TensorProto.INT32)
    hidden = _embeddings(g, w)
    for layer in w.layers:
        hidden = _encoder_layer(g, hidden, mask, layer, w, emitter)
    results = _head(g, hidden, w, task)
    outputs = []
    for name, tensor in zip(OUTPUT_NAMES[task], results):
        g.nodes.append(helper.make_node("Identity", [tensor], [name], name=f"out_{name}"))
        dims: list[Any] = ["batch"] if task == "sequence-classification" else ["batch", "sequence"]
        if name == "logits":
            dims.append(num_labels)
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, dims))
    for tap in g.extra_outputs:
        outputs.append(helper.make_tensor_value_info(tap, TensorProto.FLOAT, None))
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"]) for n in INPUT_NAMES]
    graph = helper.make_graph(g.nodes, "squeezebert", inputs, outputs, g.initializers)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)],
        producer_name="squeezeserve",
    )
    model.ir_version = 8
    return model
