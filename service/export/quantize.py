"""Int8 linear emitters: weight quantization, calibration taps, static and dynamic activations.

Only the encoder's linear layers go through these (for int8, the per-group q/k/v projection runs
inside ORT's QAttention); embeddings, the attention core, the pooler and the classifier stay fp32
(quantizing the head is where most int8 error comes from).

- static (default): uint8 activations with scale/zero-point calibrated offline, per-channel int8
  weights. A grouped linear's input is quantized once and the uint8 tensor is split (a quarter
  of the bytes to copy), so ranges are calibrated per linear, not per group. Every row is
  quantized with the same constants, so a row's result does not depend on its batch neighbours
  or padding (batch invariance). A Mitigation can give chosen linears SmoothQuant scale
  migration (x / s quantized, diag(s) W) or keep them fp32; both keep the constants constant.
- dynamic: one activation scale per tensor computed at run time (DynamicQuantizeLinear). No
  calibration, but a row's result moves with the rest of its batch; kept for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from service.export.graph import MS_DOMAIN, Emitted, Fp32Emitter, GraphBuilder, TokenLayout, split
from service.export.weights import GroupedLinear

# AVX2 without VNNI multiplies u8 x s8 pairs into saturating int16: 7-bit weights avoid overflow.
WEIGHT_QMAX_REDUCED = 63
# An input channel whose calibrated peak is this many times the median channel's is an outlier.
OUTLIER_RATIO = 8.0


@dataclass(frozen=True)
class ActivationRange:
    low: float
    high: float

    def uint8_params(self) -> tuple[np.float32, np.uint8]:
        low, high = min(self.low, 0.0), max(self.high, 0.0)  # zero must be exactly representable
        scale = max((high - low) / 255.0, 1e-8)
        zero_point = int(np.clip(round(-low / scale), 0, 255))
        return np.float32(scale), np.uint8(zero_point)


@dataclass(frozen=True)
class ActivationStats:
    """Per-input-channel min and max of one linear's input over the calibration set."""

    low: np.ndarray
    high: np.ndarray

    @staticmethod
    def of(x: np.ndarray) -> ActivationStats:
        rows = x.reshape(-1, x.shape[-1])
        return ActivationStats(rows.min(axis=0), rows.max(axis=0))

    def merged(self, other: ActivationStats) -> ActivationStats:
        return ActivationStats(np.minimum(self.low, other.low), np.maximum(self.high, other.high))

    def peak(self) -> np.ndarray:
        return np.maximum(-self.low, self.high)

    def outlier_ratio(self) -> float:
        """Largest channel peak over the median one: how much of a per-tensor range a few channels own."""
        peak = self.peak()
        return float(peak.max() / max(float(np.median(peak)), 1e-8))

    def outlier_channels(self) -> np.ndarray:
        peak = self.peak()
        return peak >= OUTLIER_RATIO * max(float(np.median(peak)), 1e-8)

    def tensor_range(self, smoothing: np.ndarray | None = None, skip: np.ndarray | None = None) -> ActivationRange:
        """The per-tensor range of x, or of x / smoothing (per channel), leaving out `skip` channels."""
        low, high = (self.low, self.high) if smoothing is None else (self.low / smoothing, self.high / smoothing)
        if skip is not None:
            low, high = low[~skip], high[~skip]
        return ActivationRange(float(low.min()), float(high.max()))


def smoothing_factors(stats: ActivationStats, weights: tuple[np.ndarray, ...], alpha: float) -> np.ndarray:
    """SmoothQuant's per-input-channel s = max|x_c|^alpha / max|w_c|^(1-alpha).

    x / s has its outlier channels tamed and diag(s) @ W absorbs them, so x @ W is unchanged in
    exact arithmetic. `weights` are the per-group matrices whose rows, in order, are x's channels.
    """
    w_peak = np.concatenate([np.abs(w).max(axis=1) for w in weights])
    s = np.power(np.maximum(stats.peak(), 1e-5), alpha) / np.power(np.maximum(w_peak, 1e-5), 1 - alpha)
    return s.astype(np.float32)


def quantize_weight(weight: np.ndarray, qmax: int = WEIGHT_QMAX_REDUCED) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-column int8: returns (int8 weight [K, N], scale [N])."""
    scale = np.abs(weight).max(axis=0) / qmax
    scale = np.where(scale == 0, 1.0, scale).astype(np.float32)
    q = np.clip(np.rint(weight / scale), -qmax, qmax).astype(np.int8)
    return q, scale


class CalibrationEmitter(Fp32Emitter):
    """fp32 graph that also exposes every quantizable linear's input as a graph output."""

    def __init__(self) -> None:
        self.taps: dict[str, str] = {}  # linear name -> tensor name

    def _tap(self, g: GraphBuilder, x: str, name: str) -> None:
        self.taps[name] = x
        if x not in g.extra_outputs:
            g.extra_outputs.append(x)

    def emit(
        self, g: GraphBuilder, x: str, weight: np.ndarray, bias: np.ndarray, name: str
    ) -> tuple[str, np.ndarray | None]:
        self._tap(g, x, name)
        return super().emit(g, x, weight, bias, name)

    def emit_grouped(self, g: GraphBuilder, x: str, lin: GroupedLinear) -> list[Emitted]:
        self._tap(g, x, lin.name)  # int8 graphs quantize the whole input once, before the split
        chunks = split(g, x, lin.groups, f"{lin.name}.split", lin.in_features)
        parts = zip(chunks, lin.weights, lin.biases)
        return [Fp32Emitter.emit(self, g, c, w, b, f"{lin.name}.g{i}") for i, (c, w, b) in enumerate(parts)]

    def emit_attention(
        self, g: GraphBuilder, x: str, lin: GroupedLinear, mask: str, heads: int, layout: TokenLayout
    ) -> list[str]:
        self._tap(g, x, lin.name)
        return super().emit_attention(g, x, lin, mask, heads, layout)


@dataclass(frozen=True)
class _Quantized:
    """A uint8 activation with its scale and zero point (constants or run-time tensors).

    `smoothing` (per input channel) is what the activation was divided by before quantizing;
    the weights that consume it take it on their rows. `outliers` marks channels left out of
    the quantized product (their values saturate; their weight rows are zeroed) and added back
    in fp32 from `source`, the unquantized input, whose channel `offset` is this part's first.
    """

    tensor: str
    scale: str
    zero_point: str
    smoothing: np.ndarray | None = None
    outliers: np.ndarray | None = None
    source: str = ""
    offset: int = 0

    def part(self, tensor: str, index: int, parts: int) -> _Quantized:
        smoothing = None if self.smoothing is None else np.split(self.smoothing, parts)[index]
        if self.outliers is None:
            return _Quantized(tensor, self.scale, self.zero_point, smoothing)
        width = len(self.outliers) // parts
        outliers = self.outliers[index * width : (index + 1) * width]
        return _Quantized(tensor, self.scale, self.zero_point, smoothing, outliers, self.source, index * width)

    def absorb(self, weight: np.ndarray) -> np.ndarray:
        weight = weight if self.smoothing is None else weight * self.smoothing[:, None]
        return weight if self.outliers is None else np.where(self.outliers[:, None], 0.0, weight).astype(np.float32)

    def add_outliers(self, g: GraphBuilder, y: str, weight: np.ndarray, name: str) -> str:
        """y + x[:, outliers] @ weight[outliers] in fp32 (a few columns: a thin GEMM)."""
        if self.outliers is None or not self.outliers.any():
            return y
        columns = g.const(f"{name}.outliers", (self.offset + np.flatnonzero(self.outliers)).astype(np.int64))
        picked = g.op("Gather", [self.source, columns], hint=f"{name}.outliers", axis=1)
        rows = g.const(f"{name}.outlier_w", weight[self.outliers].astype(np.float32))
        return g.op("Add", [y, g.op("MatMul", [picked, rows])], hint=f"{name}.with_outliers")


class _Int8Emitter:
    """Shared int8 lowering; subclasses decide how an activation is quantized."""

    def _quantize(self, g: GraphBuilder, x: str, name: str, weights: tuple[np.ndarray, ...]) -> _Quantized:
        raise NotImplementedError

    def _matmul(self, g: GraphBuilder, xq: _Quantized, weight: np.ndarray, bias: np.ndarray, name: str) -> str:
        wq, w_scale = quantize_weight(xq.absorb(weight))
        inputs = [
            xq.tensor,
            g.const(f"{name}.wq", wq),
            xq.scale,
            g.const(f"{name}.w_scale", w_scale),
            xq.zero_point,
            g.const(f"{name}.w_zp", np.zeros(wq.shape[1], dtype=np.int8)),
            g.const(f"{name}.bias", bias.astype(np.float32)),
        ]
        return xq.add_outliers(g, g.op("MatMulIntegerToFloat", inputs, hint=name, domain=MS_DOMAIN), weight, name)

    def emit(
        self, g: GraphBuilder, x: str, weight: np.ndarray, bias: np.ndarray, name: str
    ) -> tuple[str, np.ndarray | None]:
        return self._matmul(g, self._quantize(g, x, name, (weight,)), weight, bias, name), None

    def emit_grouped(self, g: GraphBuilder, x: str, lin: GroupedLinear) -> list[Emitted]:
        """Quantize once, then split the uint8 tensor (a quarter of the fp32 bytes to copy)."""
        xq = self._quantize(g, x, lin.name, lin.weights)
        chunks = split(g, xq.tensor, lin.groups, f"{lin.name}.split", lin.in_features)
        return [
            (self._matmul(g, xq.part(c, i, lin.groups), w, b, f"{lin.name}.g{i}"), None)
            for i, (c, w, b) in enumerate(zip(chunks, lin.weights, lin.biases))
        ]

    def emit_attention(
        self, g: GraphBuilder, x: str, lin: GroupedLinear, mask: str, heads: int, layout: TokenLayout
    ) -> list[str]:
        """QAttention per q/k/v group: the packed projection and attention in one kernel."""
        xq = self._quantize(g, x, lin.name, lin.weights)
        if xq.outliers is not None:
            return self._split_attention(g, xq, lin, mask, heads, layout)
        chunks = split(g, layout.to_padded(g, xq.tensor), lin.groups, f"{lin.name}.split", lin.in_features)
        outs = []
        for i, (c, w, b) in enumerate(zip(chunks, lin.weights, lin.biases)):
            wq, w_scale = quantize_weight(xq.part(c, i, lin.groups).absorb(w))
            name = f"{lin.name}.g{i}"
            w_zp = g.const(f"{name}.w_zp", np.zeros(wq.shape[1], np.int8))
            bias = g.const(f"{name}.b", b.astype(np.float32))
            scale = g.const(f"{name}.w_scale", w_scale)
            inputs = [c, g.const(f"{name}.wq", wq), bias, xq.scale, scale, mask, xq.zero_point, w_zp]
            outs.append(g.op("QAttention", inputs, hint=name, domain=MS_DOMAIN, num_heads=heads))
        return outs

    def _split_attention(
        self, g: GraphBuilder, xq: _Quantized, lin: GroupedLinear, mask: str, heads: int, layout: TokenLayout
    ) -> list[str]:
        """int8 q/k/v projection plus the outlier channels in fp32, then MultiHeadAttention:
        QAttention takes no correction term between its projection and its attention."""
        chunks = split(g, xq.tensor, lin.groups, f"{lin.name}.split", lin.in_features)
        outs = []
        for i, (c, w, b) in enumerate(zip(chunks, lin.weights, lin.biases)):
            qkv = self._matmul(g, xq.part(c, i, lin.groups), w, b, f"{lin.name}.g{i}")
            q, k, v = (layout.to_padded(g, t) for t in split(g, qkv, 3, f"{lin.name}.g{i}.qkv", w.shape[1]))
            outs.append(g.op("MultiHeadAttention", [q, k, v, "", mask], domain=MS_DOMAIN, num_heads=heads))
        return outs


@dataclass(frozen=True)
class Mitigation:
    """What the static emitter does differently for the linears whose inputs carry outliers.

    smoothed: SmoothQuant scale migration (x / s quantized per tensor, diag(s) W per channel);
    one elementwise Mul per smoothed linear at run time, constant per channel, so still batch-invariant.
    kept_fp32: not quantized at all (fp32 Gemm / Attention).
    """

    smoothed: frozenset[str] = frozenset()
    alpha: float = 0.5
    kept_fp32: frozenset[str] = frozenset()
    split: frozenset[str] = frozenset()  # outlier channels in fp32 beside the int8 product


@dataclass
class StaticInt8Emitter(_Int8Emitter):
    """QuantizeLinear(x) with calibrated constants -> MatMulIntegerToFloat / QAttention."""

    stats: dict[str, ActivationStats]
    mitigation: Mitigation = Mitigation()
    _quantized: dict[tuple[str, str], _Quantized] = field(default_factory=dict)

    def _quantize(self, g: GraphBuilder, x: str, name: str, weights: tuple[np.ndarray, ...]) -> _Quantized:
        smooth = name in self.mitigation.smoothed
        key = (x, name if smooth or name in self.mitigation.split else "")
        if key in self._quantized:  # an input shared by several unsmoothed linears is quantized once
            return self._quantized[key]
        s = smoothing_factors(self.stats[name], weights, self.mitigation.alpha) if smooth else None
        outliers = self.stats[name].outlier_channels() if name in self.mitigation.split else None
        a_scale, a_zp = self.stats[name].tensor_range(s, outliers).uint8_params()
        scale, zp = g.const(f"{name}.a_scale", a_scale), g.const(f"{name}.a_zp", a_zp)
        source = x
        if s is not None:  # a per-axis QuantizeLinear would divide for free, but ORT's runs ~100x slower
            x = g.op("Mul", [x, g.const(f"{name}.smooth", (1.0 / s).astype(np.float32))], hint=f"{name}.smooth")
        q = g.op("QuantizeLinear", [x, scale, zp], hint=f"{name}.q")
        self._quantized[key] = _Quantized(q, scale, zp, s, outliers, source)
        return self._quantized[key]

    def emit(
        self, g: GraphBuilder, x: str, weight: np.ndarray, bias: np.ndarray, name: str
    ) -> tuple[str, np.ndarray | None]:
        if name in self.mitigation.kept_fp32:
            return Fp32Emitter().emit(g, x, weight, bias, name)
        return super().emit(g, x, weight, bias, name)

    def emit_grouped(self, g: GraphBuilder, x: str, lin: GroupedLinear) -> list[Emitted]:
        if lin.name in self.mitigation.kept_fp32:
            chunks = split(g, x, lin.groups, f"{lin.name}.split", lin.in_features)
            parts = enumerate(zip(chunks, lin.weights, lin.biases))
            return [Fp32Emitter().emit(g, c, w, b, f"{lin.name}.g{i}") for i, (c, w, b) in parts]
        return super().emit_grouped(g, x, lin)

    def emit_attention(
        self, g: GraphBuilder, x: str, lin: GroupedLinear, mask: str, heads: int, layout: TokenLayout
    ) -> list[str]:
        if lin.name in self.mitigation.kept_fp32:
            return Fp32Emitter().emit_attention(g, x, lin, mask, heads, layout)
        return super().emit_attention(g, x, lin, mask, heads, layout)


class DynamicInt8Emitter(_Int8Emitter):
    """Per-tensor activation scale computed per run (not batch-invariant).

    Linears stay DynamicQuantizeMatMul on each group's fp32 slice (one fused op per group);
    attention quantizes its input with DynamicQuantizeLinear for QAttention.
    """

    def _quantize(self, g: GraphBuilder, x: str, name: str, weights: tuple[np.ndarray, ...]) -> _Quantized:
        tensor, scale, zero_point = g.op_n("DynamicQuantizeLinear", [x], 3, hint=f"{name}.q")
        return _Quantized(tensor, scale, zero_point)

    def emit(
        self, g: GraphBuilder, x: str, weight: np.ndarray, bias: np.ndarray, name: str
    ) -> tuple[str, np.ndarray | None]:
        wq, w_scale = quantize_weight(weight)
        inputs = [
            x,
            g.const(f"{name}.wq", wq),
            g.const(f"{name}.w_scale", w_scale),
            g.const(f"{name}.w_zp", np.zeros(wq.shape[1], dtype=np.int8)),
            g.const(f"{name}.bias", bias.astype(np.float32)),
        ]
        return g.op("DynamicQuantizeMatMul", inputs, hint=name, domain=MS_DOMAIN), None

    def emit_grouped(self, g: GraphBuilder, x: str, lin: GroupedLinear) -> list[Emitted]:
        chunks = split(g, x, lin.groups, f"{lin.name}.split", lin.in_features)
        parts = zip(chunks, lin.weights, lin.biases)
        return [self.emit(g, c, w, b, f"{lin.name}.g{i}") for i, (c, w, b) in enumerate(parts)]
