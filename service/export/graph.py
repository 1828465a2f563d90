"""Builds the served ONNX graph for SqueezeBERT in token-major layout from regrouped weights.

SqueezeBERT computes in channels-first (NCW) layout with 1x1 grouped Conv1d. The same maths in
token-major (NWC) layout is a set of per-group MatMuls with constant weights as the second input,
which quantize to fast int8 GEMM kernels (ConvInteger is slow on AVX2) and need no layout
transposes. The encoder keeps its hidden state 2-D [batch*sequence, C]: MatMul/Gemm run on it
directly, and ORT then leaves `Add + LayerNormalization` alone instead of fusing it into
SkipLayerNormalization, whose CPU kernel is ~7x slower than LayerNormalization (ORT 1.31).
Attention heads never cross q/k/v groups, so each group runs its own fused attention op.
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

Emitted = tuple[str, "np.ndarray | None"]


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

    def const(self, hint: str, value: np.ndarray | np.generic) -> str:
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
    """Emits `x @ weight (+ bias)`; may return the bias unapplied for the caller to fuse.

    Emitters may also offer `emit_grouped(g, x, lin)` (a whole grouped linear on the unsplit
    input, e.g. to quantize before splitting) and `emit_attention(g, x, lin, mask, heads, shape)`
    (fused per-group q/k/v projection + attention); the builder falls back to `emit` without them.
    """

    def emit(
        self, g: GraphBuilder, x: str, weight: np.ndarray, bias: np.ndarray, name: str
    ) -> tuple[str, np.ndarray | None]: ...


def split(g: GraphBuilder, x: str, parts: int, hint: str, width: int) -> list[str]:
    """Equal parts of the last axis (width wide). Sizes are explicit: ORT's common-subexpression
    pass merges size-less Splits of one tensor even when their output counts differ."""
    if parts == 1:
        return [x]
    sizes = g.const(f"{hint}.sizes", np.full(parts, width // parts, dtype=np.int64))
    return g.op_n("Split", [x, sizes], parts, hint=hint, axis=-1)


def concat(g: GraphBuilder, xs: Sequence[str], hint: str) -> str:
    return xs[0] if len(xs) == 1 else g.op("Concat", xs, hint=hint, axis=-1)


def to_3d(g: GraphBuilder, x: str, shape: str) -> str:
    return g.op("Reshape", [x, shape], hint="to3d")


class Fp32Emitter:
    """Gemm with the bias fused (the encoder is 2-D); per-group attention uses ORT's Attention op."""

    def emit(
        self, g: GraphBuilder, x: str, weight: np.ndarray, bias: np.ndarray, name: str
    ) -> tuple[str, np.ndarray | None]:
        w, b = g.const(f"{name}.w", weight.astype(np.float32)), g.const(f"{name}.b", bias.astype(np.float32))
        return g.op("Gemm", [x, w, b], hint=name), None

    def emit_attention(
        self, g: GraphBuilder, x: str, lin: GroupedLinear, mask: str, heads: int, shape: str
    ) -> list[str]:
        chunks = split(g, to_3d(g, x, shape), lin.groups, f"{lin.name}.split", lin.in_features)
        return [
            g.op(
                "Attention",
                [c, g.const(f"{lin.name}.g{i}.w", w), g.const(f"{lin.name}.g{i}.b", b), mask],
                hint=f"{lin.name}.g{i}",
                domain=MS_DOMAIN,
                num_heads=heads,
            )
            for i, (c, w, b) in enumerate(zip(chunks, lin.weights, lin.biases))
        ]


def grouped(g: GraphBuilder, x: str | list[str], lin: GroupedLinear, emitter: LinearEmitter) -> list[Emitted]:
    """Apply a grouped linear to a whole tensor or to activations already split into its groups."""
    if isinstance(x, list) and len(x) != lin.groups:
        x = concat(g, x, f"{lin.name}.cat")
    if isinstance(x, str) and hasattr(emitter, "emit_grouped"):
        return emitter.emit_grouped(g, x, lin)
    chunks = split(g, x, lin.groups, f"{lin.name}.split", lin.in_features) if isinstance(x, str) else x
    parts = zip(chunks, lin.weights, lin.biases)
    return [emitter.emit(g, c, w, b, f"{lin.name}.g{i}") for i, (c, w, b) in enumerate(parts)]


def _join(g: GraphBuilder, outs: list[Emitted], hint: str) -> tuple[str, str | None]:
    """Concatenate group outputs; return (tensor, name of the pending concatenated bias or None)."""
    tensor = concat(g, [t for t, _ in outs], hint)
    pending = [b for _, b in outs]
    if all(b is None for b in pending):
        return tensor, None
    bias = np.concatenate([b for b in pending if b is not None]).astype(np.float32)
    return tensor, g.const(f"{hint}.bias", bias)


def _add_norm(g: GraphBuilder, x: str, skip: str, bias: str | None, norm: LayerNormWeights, eps: float) -> str:
    summed = g.op("Add", [x, skip])
    if bias is not None:
        summed = g.op("Add", [summed, bias])
    inputs = [summed, g.const("ln.gamma", norm.gamma), g.const("ln.beta", norm.beta)]
    return g.op("LayerNormalization", inputs, axis=-1, epsilon=eps)


class _Shapes:
    """Shared per-graph tensors: the int32 key mask and Reshape targets for 3-D / 2-D views."""

    def __init__(self, g: GraphBuilder, hidden: int) -> None:
        self.mask = g.op("Cast", ["attention_mask"], to=TensorProto.INT32)
        batch_seq = g.op("Shape", ["input_ids"])
        self.shape3 = g.op("Concat", [batch_seq, g.const("minus1", np.array([-1], dtype=np.int64))], axis=0)
        self.shape2 = self.const_2d(g, hidden)

    @staticmethod
    def const_2d(g: GraphBuilder, width: int) -> str:
        return g.const("shape2", np.array([-1, width], dtype=np.int64))


def _packed_heads(g: GraphBuilder, x: str, layer: EncoderLayerWeights, emitter: LinearEmitter) -> list[str]:
    """Q, K, V as [B*S, C] each, from the packed per-group projection or three separate ones."""
    if layer.qkv is not None:
        per_part: list[list[Emitted]] = [[], [], []]
        for (t, b), w in zip(grouped(g, x, layer.qkv, emitter), layer.qkv.weights):
            for i, piece in enumerate(split(g, t, 3, "qkv.parts", w.shape[1])):
                per_part[i].append((piece, None if b is None else np.split(b, 3)[i]))
    else:
        per_part = [grouped(g, x, lin, emitter) for lin in (layer.query, layer.key, layer.value) if lin is not None]
    joined = [_join(g, outs, "qkv.cat") for outs in per_part]
    return [t if b is None else g.op("Add", [t, b]) for t, b in joined]


def _attention(
    g: GraphBuilder, x: str, sh: _Shapes, layer: EncoderLayerWeights, w: SqueezeBertWeights, emitter: LinearEmitter
) -> list[str]:
    """Attention context as 2-D chunks (one per q/k/v group when heads stay inside groups)."""
    lin = layer.qkv
    if lin is not None and w.num_heads % lin.groups == 0 and hasattr(emitter, "emit_attention"):
        outs = emitter.emit_attention(g, x, lin, sh.mask, w.num_heads // lin.groups, sh.shape3)
        if layer.post_attention.groups != len(outs):
            outs = [concat(g, outs, "ctx.cat")]
        width = sh.const_2d(g, w.hidden_size // len(outs))
        return [g.op("Reshape", [o, width]) for o in outs]
    q, k, v = (to_3d(g, t, sh.shape3) for t in _packed_heads(g, x, layer, emitter))
    ctx = g.op("MultiHeadAttention", [q, k, v, "", sh.mask], domain=MS_DOMAIN, num_heads=w.num_heads)
    return [g.op("Reshape", [ctx, sh.shape2])]


def _encoder_layer(
    g: GraphBuilder, x: str, sh: _Shapes, layer: EncoderLayerWeights, w: SqueezeBertWeights, emitter: LinearEmitter
) -> str:
    eps = w.layer_norm_eps
    ctx = _attention(g, x, sh, layer, w, emitter)
    post, bias = _join(g, grouped(g, ctx, layer.post_attention, emitter), "post")
    x1 = _add_norm(g, post, x, bias, layer.post_attention_norm, eps)
    hidden = []
    for t, b in grouped(g, x1, layer.intermediate, emitter):
        if b is None:
            hidden.append(g.op("Gelu", [t], domain=MS_DOMAIN))
        else:
            hidden.append(g.op("BiasGelu", [t, g.const("ffn.bias", b)], domain=MS_DOMAIN))
    out, bias = _join(g, grouped(g, hidden, layer.output, emitter), "out")
    return _add_norm(g, out, x1, bias, layer.output_norm, eps)


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
    start, end = split(g, logits, 2, "qa.split", 2)
    axes = g.const("axes", np.array([-1], dtype=np.int64))
    return [g.op("Squeeze", [start, axes]), g.op("Squeeze", [end, axes])]


def build_model(w: SqueezeBertWeights, task: str, emitter: LinearEmitter, num_labels: int) -> onnx.ModelProto:
    """The whole graph: embeddings, encoder layers, task head. Dynamic batch and sequence axes."""
    g = GraphBuilder()
    sh = _Shapes(g, w.hidden_size)
    hidden = g.op("Reshape", [_embeddings(g, w), sh.shape2])
    for layer in w.layers:
        hidden = _encoder_layer(g, hidden, sh, layer, w, emitter)
    results = _head(g, to_3d(g, hidden, sh.shape3), w, task)
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
