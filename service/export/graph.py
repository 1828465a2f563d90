"""Builds the served ONNX graph for SqueezeBERT in token-major layout from regrouped weights.

SqueezeBERT computes in channels-first (NCW) layout with 1x1 grouped Conv1d. The same maths in
token-major (NWC) layout is a set of per-group MatMuls with constant weights as the second input,
which quantize to fast int8 GEMM kernels (ConvInteger is slow on AVX2) and need no layout
transposes. The encoder keeps its hidden state 2-D [batch*sequence, C]: MatMul/Gemm run on it
directly, and ORT then leaves `Add + LayerNormalization` alone instead of fusing it into
SkipLayerNormalization, whose CPU kernel is ~7x slower than LayerNormalization (ORT 1.31).
Attention heads never cross q/k/v groups, so each group runs its own fused attention op.
How each linear layer is emitted (fp32, calibration taps, int8) is left to a LinearEmitter.

Two layouts of the same maths (a TokenLayout):
- packed (default): input_ids and token_type_ids hold only the real tokens of every row,
  concatenated ([tokens]); attention_mask [rows, longest] says which row each belongs to. Every
  per-token op (embeddings, all linear layers, norms, GELU: ~95 % of the FLOPs) runs on real tokens
  only; attention alone gathers them into a padded [rows, longest, C] view and back. A batch of
  mixed lengths then costs what its tokens cost, not rows x longest.
- padded: [rows, longest] inputs, the hidden state [rows*longest, C] pads included (old stores).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from service.export.weights import EncoderLayerWeights, GroupedLinear, LayerNormWeights, SqueezeBertWeights
from service.runtime.layout import LAYOUTS

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
    input, e.g. to quantize before splitting) and `emit_attention(g, x, lin, mask, heads, layout)`
    (fused per-group q/k/v projection + attention on `layout.to_padded(g, x)`); the builder falls
    back to `emit` without them.
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
        self, g: GraphBuilder, x: str, lin: GroupedLinear, mask: str, heads: int, layout: TokenLayout
    ) -> list[str]:
        chunks = split(g, layout.to_padded(g, x), lin.groups, f"{lin.name}.split", lin.in_features)
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


class TokenLayout(Protocol):
    """How the graph's inputs hold the tokens, and the views attention and the head need."""

    mask: str  # int32 [rows, longest] key mask (1 = real token)

    def input_dims(self) -> dict[str, list[Any]]: ...

    def embeddings(self, g: GraphBuilder, w: SqueezeBertWeights) -> str:
        """Word + type + position embeddings, LayerNorm'ed, as the 2-D hidden state."""
        ...

    def to_padded(self, g: GraphBuilder, x: str) -> str:
        """2-D hidden state -> [rows, longest, C] for attention."""
        ...

    def to_tokens(self, g: GraphBuilder, x: str, width: int) -> str:
        """[rows, longest, width] attention output -> the 2-D hidden state's token order."""
        ...

    def first_tokens(self, g: GraphBuilder, hidden: str) -> str:
        """[rows, C]: each row's [CLS] token."""
        ...

    def per_token_output(self, g: GraphBuilder, hidden: str) -> str:
        """The 2-D hidden state shaped as per-token outputs leave the graph (token_dims)."""
        ...

    def token_dims(self) -> list[Any]: ...


def _embedding_sum(g: GraphBuilder, w: SqueezeBertWeights, positions: str) -> str:
    words = g.op("Gather", [g.const("word_emb", w.word_embeddings), "input_ids"])
    types = g.op("Gather", [g.const("type_emb", w.token_type_embeddings), "token_type_ids"])
    summed = g.op("Add", [g.op("Add", [words, types]), positions])
    norm = w.embedding_norm
    return g.op(
        "LayerNormalization",
        [summed, g.const("emb.gamma", norm.gamma), g.const("emb.beta", norm.beta)],
        axis=-1,
        epsilon=w.layer_norm_eps,
    )


class PaddedLayout:
    """[rows, longest] inputs; the hidden state is [rows*longest, C], padding included."""

    def __init__(self, g: GraphBuilder, hidden: int) -> None:
        self.mask = g.op("Cast", ["attention_mask"], to=TensorProto.INT32)
        batch_seq = g.op("Shape", ["input_ids"])
        self.shape3 = g.op("Concat", [batch_seq, g.const("minus1", np.array([-1], dtype=np.int64))], axis=0)
        self.hidden = hidden

    def input_dims(self) -> dict[str, list[Any]]:
        return {name: ["batch", "sequence"] for name in INPUT_NAMES}

    def embeddings(self, g: GraphBuilder, w: SqueezeBertWeights) -> str:
        seq_len = g.op("Shape", ["input_ids"], start=1, end=2)
        zero = g.const("zero", np.array([0], dtype=np.int64))
        positions = g.op("Slice", [g.const("pos_emb", w.position_embeddings), zero, seq_len, zero])
        return g.op("Reshape", [_embedding_sum(g, w, positions), _shape_2d(g, self.hidden)])

    def to_padded(self, g: GraphBuilder, x: str) -> str:
        return to_3d(g, x, self.shape3)

    def to_tokens(self, g: GraphBuilder, x: str, width: int) -> str:
        return g.op("Reshape", [x, _shape_2d(g, width)])

    def first_tokens(self, g: GraphBuilder, hidden: str) -> str:
        cls = g.const("cls", np.array(0, dtype=np.int64))
        return g.op("Gather", [to_3d(g, hidden, self.shape3), cls], axis=1)

    def per_token_output(self, g: GraphBuilder, hidden: str) -> str:
        return to_3d(g, hidden, self.shape3)  # [rows, longest, C]

    def token_dims(self) -> list[Any]:
        return ["batch", "sequence"]


class PackedLayout:
    """input_ids / token_type_ids [tokens]: real tokens only, row after row; mask [rows, longest].

    Every index is derived in the graph from the mask, so the caller's contract stays three
    tensors: a row of length n owns the next n tokens and the first n places of its mask row.
    """

    def __init__(self, g: GraphBuilder, hidden: int) -> None:
        del hidden
        self.mask = g.op("Cast", ["attention_mask"], to=TensorProto.INT32)
        zero, one = g.const("zero", np.array(0, np.int64)), g.const("one", np.array(1, np.int64))
        longest = g.op("Squeeze", [g.op("Shape", ["attention_mask"], start=1, end=2)])
        positions = g.op("Range", [zero, longest, one], hint="positions")  # [longest]
        lengths = g.op("ReduceSum", ["attention_mask", g.const("axis1", np.array([1], np.int64))], keepdims=1)
        starts = g.op("CumSum", [lengths, g.const("axis0", np.array(0, np.int64))], exclusive=1)  # [rows, 1]
        # Where each padded place finds its token in the packed input (pads: token 0, masked out).
        self.padded_index = g.op("Mul", [g.op("Add", [starts, positions]), "attention_mask"], hint="padded_index")
        flat = g.const("flat", np.array([-1], np.int64))
        flat_mask = g.op("Reshape", ["attention_mask", flat])
        # Where each packed token sits in the flattened padded view, and its position in its row.
        self.unpad_index = g.op("Squeeze", [g.op("NonZero", [flat_mask]), g.const("axes0", np.array([0], np.int64))])
        grid = g.op("Expand", [positions, g.op("Shape", ["attention_mask"])])
        self.position_ids = g.op("Gather", [g.op("Reshape", [grid, flat]), self.unpad_index])

    def input_dims(self) -> dict[str, list[Any]]:
        return {"input_ids": ["tokens"], "attention_mask": ["batch", "sequence"], "token_type_ids": ["tokens"]}

    def embeddings(self, g: GraphBuilder, w: SqueezeBertWeights) -> str:
        positions = g.op("Gather", [g.const("pos_emb", w.position_embeddings), self.position_ids])
        return _embedding_sum(g, w, positions)

    def to_padded(self, g: GraphBuilder, x: str) -> str:
        return g.op("Gather", [x, self.padded_index], hint="to_padded")

    def to_tokens(self, g: GraphBuilder, x: str, width: int) -> str:
        return g.op("Gather", [g.op("Reshape", [x, _shape_2d(g, width)]), self.unpad_index], hint="to_tokens")

    def first_tokens(self, g: GraphBuilder, hidden: str) -> str:
        first = g.op("Gather", [self.padded_index, g.const("cls", np.array(0, dtype=np.int64))], axis=1)
        return g.op("Gather", [hidden, first])

    def per_token_output(self, g: GraphBuilder, hidden: str) -> str:
        return hidden  # already [tokens, C]

    def token_dims(self) -> list[Any]:
        return ["tokens"]


def _shape_2d(g: GraphBuilder, width: int) -> str:
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
    g: GraphBuilder, x: str, lay: TokenLayout, layer: EncoderLayerWeights, w: SqueezeBertWeights, emitter: LinearEmitter
) -> list[str]:
    """Attention context as 2-D chunks (one per q/k/v group when heads stay inside groups)."""
    lin = layer.qkv
    # The fused per-group op (QAttention) projects q/k/v on the padded view, pads included, yet
    # measured faster than projecting the real tokens and running MultiHeadAttention on the
    # gathered q/k/v (packed, 8 mixed 8-256-token rows: 25 vs 34 ms CPU per row; equal lengths
    # +10-15 %); with the batcher's length grouping few pads reach it.
    if lin is not None and w.num_heads % lin.groups == 0 and hasattr(emitter, "emit_attention"):
        outs = emitter.emit_attention(g, x, lin, lay.mask, w.num_heads // lin.groups, lay)
        if layer.post_attention.groups != len(outs):
            outs = [concat(g, outs, "ctx.cat")]
        return [lay.to_tokens(g, o, w.hidden_size // len(outs)) for o in outs]
    q, k, v = (lay.to_padded(g, t) for t in _packed_heads(g, x, layer, emitter))
    ctx = g.op("MultiHeadAttention", [q, k, v, "", lay.mask], domain=MS_DOMAIN, num_heads=w.num_heads)
    return [lay.to_tokens(g, ctx, w.hidden_size)]


def _encoder_layer(
    g: GraphBuilder, x: str, lay: TokenLayout, layer: EncoderLayerWeights, w: SqueezeBertWeights, emitter: LinearEmitter
) -> str:
    eps = w.layer_norm_eps
    ctx = _attention(g, x, lay, layer, w, emitter)
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


def _linear_fp32(g: GraphBuilder, x: str, weight: np.ndarray, bias: np.ndarray, hint: str) -> str:
    return g.op("Add", [g.op("MatMul", [x, g.const(f"{hint}.w", weight)]), g.const(f"{hint}.b", bias)], hint=hint)


def _head(g: GraphBuilder, hidden: str, lay: TokenLayout, w: SqueezeBertWeights, task: str) -> list[str]:
    """Task outputs: [rows, labels] for classification, per token (in the layout's order) otherwise."""
    weight, bias = w.head
    if task == "sequence-classification":
        assert w.pooler is not None
        cls = lay.first_tokens(g, hidden)
        pooled = g.op("Tanh", [_linear_fp32(g, cls, w.pooler[0], w.pooler[1], "pooler")])
        return [_linear_fp32(g, pooled, weight, bias, "classifier")]
    logits = _linear_fp32(g, lay.per_token_output(g, hidden), weight, bias, "classifier")
    if task == "token-classification":
        return [logits]
    start, end = split(g, logits, 2, "qa.split", 2)
    axes = g.const("axes", np.array([-1], dtype=np.int64))
    return [g.op("Squeeze", [start, axes]), g.op("Squeeze", [end, axes])]


def build_model(
    w: SqueezeBertWeights, task: str, emitter: LinearEmitter, num_labels: int, layout: str = "packed"
) -> onnx.ModelProto:
    """The whole graph: embeddings, encoder layers, task head, in the given token layout."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}")
    g = GraphBuilder()
    lay: TokenLayout = PackedLayout(g, w.hidden_size) if layout == "packed" else PaddedLayout(g, w.hidden_size)
    hidden = lay.embeddings(g, w)
    for layer in w.layers:
        hidden = _encoder_layer(g, hidden, lay, layer, w, emitter)
    results = _head(g, hidden, lay, w, task)
    outputs = []
    for name, tensor in zip(OUTPUT_NAMES[task], results):
        g.nodes.append(helper.make_node("Identity", [tensor], [name], name=f"out_{name}"))
        dims: list[Any] = ["batch"] if task == "sequence-classification" else lay.token_dims()
        if name == "logits":
            dims.append(num_labels)
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, dims))
    for tap in g.extra_outputs:
        outputs.append(helper.make_tensor_value_info(tap, TensorProto.FLOAT, None))
    dims_in = lay.input_dims()
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, dims_in[n]) for n in INPUT_NAMES]
    graph = helper.make_graph(g.nodes, "squeezebert", inputs, outputs, g.initializers)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)],
        producer_name="squeezeserve",
    )
    model.ir_version = 8
    return model
