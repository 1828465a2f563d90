"""SqueezeBERT weights as plain numpy arrays, regrouped for a token-major (NWC) graph."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

Array = np.ndarray


@dataclass(frozen=True)
class GroupedLinear:
    """A 1x1 grouped Conv1d seen as `groups` independent MatMuls on channel slices.

    weights[i] is [K/groups, N_i] (ready to be the *second* MatMul input), biases[i] is [N_i].
    """

    name: str
    weights: tuple[Array, ...]
    biases: tuple[Array, ...]

    @property
    def groups(self) -> int:
        return len(self.weights)

    @property
    def in_features(self) -> int:
        return sum(w.shape[0] for w in self.weights)


@dataclass(frozen=True)
class LayerNormWeights:
    gamma: Array
    beta: Array


@dataclass(frozen=True)
class EncoderLayerWeights:
    qkv: GroupedLinear | None  # per group [q_g|k_g|v_g] when q, k, v share a grouping
    query: GroupedLinear | None
    key: GroupedLinear | None
    value: GroupedLinear | None
    post_attention: GroupedLinear
    post_attention_norm: LayerNormWeights
    intermediate: GroupedLinear
    output: GroupedLinear
    output_norm: LayerNormWeights


@dataclass(frozen=True)
class SqueezeBertWeights:
    word_embeddings: Array
    position_embeddings: Array
    token_type_embeddings: Array
    embedding_norm: LayerNormWeights
    layers: tuple[EncoderLayerWeights, ...]
    num_heads: int
    hidden_size: int
    layer_norm_eps: float
    pooler: tuple[Array, Array] | None  # (weight [H, H] as second MatMul input, bias)
    head: tuple[Array, Array]  # classifier / qa_outputs: (weight [H, L], bias [L])


def conv_as_grouped_linear(name: str, weight: Array, bias: Array, groups: int) -> GroupedLinear:
    """Split a Conv1d(kernel_size=1, groups=g) weight [N, K/g, 1] into g MatMul weights [K/g, N/g]."""
    out_features = weight.shape[0]
    per_group = out_features // groups
    ws = tuple(
        np.ascontiguousarray(weight[i * per_group : (i + 1) * per_group, :, 0].T, dtype=np.float32)
        for i in range(groups)
    )
    bs = tuple(np.asarray(bias[i * per_group : (i + 1) * per_group], dtype=np.float32) for i in range(groups))
    return GroupedLinear(name, ws, bs)


def pack_qkv(q: GroupedLinear, k: GroupedLinear, v: GroupedLinear) -> GroupedLinear | None:
    """Fuse q/k/v into one MatMul per group with columns [q_g | k_g | v_g].

    One wider GEMM per group instead of three narrow ones; only possible when q, k and v share
    the same grouping (as in every published SqueezeBERT config).
    """
    if not (q.groups == k.groups == v.groups):
        return None
    weights = tuple(np.ascontiguousarray(np.concatenate(ws, axis=1)) for ws in zip(q.weights, k.weights, v.weights))
    biases = tuple(np.concatenate(bs) for bs in zip(q.biases, k.biases, v.biases))
    return GroupedLinear(q.name.replace("query", "qkv"), weights, biases)


def _layer(state: Mapping[str, Array], prefix: str, config: Mapping[str, int]) -> EncoderLayerWeights:
    def conv(sub: str, groups: int) -> GroupedLinear:
        return conv_as_grouped_linear(
            f"{prefix}.{sub}", state[f"{prefix}.{sub}.weight"], state[f"{prefix}.{sub}.bias"], groups
        )

    def norm(sub: str) -> LayerNormWeights:
        return LayerNormWeights(state[f"{prefix}.{sub}.weight"], state[f"{prefix}.{sub}.bias"])

    q = conv("attention.query", config["q_groups"])
    k = conv("attention.key", config["k_groups"])
    v = conv("attention.value", config["v_groups"])
    qkv = pack_qkv(q, k, v)
    return EncoderLayerWeights(
        qkv=qkv,
        query=None if qkv else q,
        key=None if qkv else k,
        value=None if qkv else v,
        post_attention=conv("post_attention.conv1d", config["post_attention_groups"]),
        post_attention_norm=norm("post_attention.layernorm"),
        intermediate=conv("intermediate.conv1d", config["intermediate_groups"]),
        output=conv("output.conv1d", config["output_groups"]),
        output_norm=norm("output.layernorm"),
    )


def extract_weights(state: Mapping[str, Array], config: Mapping[str, object], task: str) -> SqueezeBertWeights:
    """Regroup a SqueezeBertFor<Task> state dict (numpy values) for the graph builder."""
    ints = {k: int(v) for k, v in config.items() if isinstance(v, int) and not isinstance(v, bool)}
    num_heads = ints["num_attention_heads"]
    base = "transformer"
    layers = tuple(_layer(state, f"{base}.encoder.layers.{i}", ints) for i in range(ints["num_hidden_layers"]))
    emb = f"{base}.embeddings"
    pooler = None
    if task == "sequence-classification":
        pooler = (state[f"{base}.pooler.dense.weight"].T.copy(), state[f"{base}.pooler.dense.bias"])
        head_name = "classifier"
    elif task == "token-classification":
        head_name = "classifier"
    else:
        head_name = "qa_outputs"
    return SqueezeBertWeights(
        word_embeddings=state[f"{emb}.word_embeddings.weight"],
        position_embeddings=state[f"{emb}.position_embeddings.weight"],
        token_type_embeddings=state[f"{emb}.token_type_embeddings.weight"],
        embedding_norm=LayerNormWeights(state[f"{emb}.LayerNorm.weight"], state[f"{emb}.LayerNorm.bias"]),
        layers=layers,
        num_heads=num_heads,
        hidden_size=ints["hidden_size"],
        layer_norm_eps=float(config["layer_norm_eps"]),  # type: ignore[arg-type]
        pooler=pooler,
        head=(state[f"{head_name}.weight"].T.copy(), state[f"{head_name}.bias"]),
    )
