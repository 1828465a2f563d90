"""Int8 linear emitters: weight quantization, calibration taps, static and dynamic activations.

Only the encoder's linear layers go through these (for int8, the per-group q/k/v projection runs
inside ORT's QAttention); embeddings, the attention core, the pooler and the classifier stay fp32
(quantizing the head is where most int8 error comes from).

- static (default): uint8 activations with scale/zero-point calibrated offline, per-channel int8
  weights. A grouped linear's input is quantized once and the uint8 tensor is split (a quarter
  of the bytes to copy), so ranges are calibrated per linear, not per group. Every row is
  quantized with the same constants, so a row's result does not depend on its batch neighbours
  or padding (batch invariance).
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


@dataclass(frozen=True)
class ActivationRange:
    low: float
    high: float

    def merged(self, other: ActivationRange) -> ActivationRange:
        return ActivationRange(min(self.low, other.low), max(self.high, other.high))

    def uint8_params(self) -> tuple[np.float32, np.uint8]:
        low, high = min(self.low, 0.0), max(self.high, 0.0)  # zero must be exactly representable
        scale = max((high - low) / 255.0, 1e-8)
        zero_point = int(np.clip(round(-low / scale), 0, 255))
        return np.float32(scale), np.uint8(zero_point)


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
    """A uint8 activation with its scale and zero point (constants or run-time tensors)."""

    tensor: str
    scale: str
    zero_point: str


class _Int8Emitter:
    """Shared int8 lowering; subclasses decide how an activation is quantized."""

    def _quantize(self, g: GraphBuilder, x: str, name: str) -> _Quantized:
        raise NotImplementedError

    def _matmul(self, g: GraphBuilder, xq: _Quantized, weight: np.ndarray, bias: np.ndarray, name: str) -> str:
        wq, w_scale = quantize_weight(weight)
        inputs = [
            xq.tensor,
            g.const(f"{name}.wq", wq),
            xq.scale,
            g.const(f"{name}.w_scale", w_scale),
            xq.zero_point,
            g.const(f"{name}.w_zp", np.zeros(wq.shape[1], dtype=np.int8)),
            g.const(f"{name}.bias", bias.astype(np.float32)),
        ]
        return g.op("MatMulIntegerToFloat", inputs, hint=name, domain=MS_DOMAIN)

    def emit(
        self, g: GraphBuilder, x: str, weight: np.ndarray, bias: np.ndarray, name: str
    ) -> tuple[str, np.ndarray | None]:
        return self._matmul(g, self._quantize(g, x, name), weight, bias, name), None

    def emit_grouped(self, g: GraphBuilder, x: str, lin: GroupedLinear) -> list[Emitted]:
        """Quantize once, then split the uint8 tensor (a quarter of the fp32 bytes to copy)."""
        xq = self._quantize(g, x, lin.name)
        chunks = split(g, xq.tensor, lin.groups, f"{lin.name}.split", lin.in_features)
        return [
            (self._matmul(g, _Quantized(c, xq.scale, xq.zero_point), w, b, f"{lin.name}.g{i}"), None)
            for i, (c, w, b) in enumerate(zip(chunks, lin.weights, lin.biases))
        ]

    def emit_attention(
        self, g: GraphBuilder, x: str, lin: GroupedLinear, mask: str, heads: int, layout: TokenLayout
    ) -> list[str]:
        """QAttention per q/k/v group: the packed projection and attention in one kernel."""
        xq = self._quantize(g, x, lin.name)
        chunks = split(g, layout.to_padded(g, xq.tensor), lin.groups, f"{lin.name}.split", lin.in_features)
        outs = []
        for i, (c, w, b) in enumerate(zip(chunks, lin.weights, lin.biases)):
            wq, w_scale = quantize_weight(w)
            name = f"{lin.name}.g{i}"
            w_zp = g.const(f"{name}.w_zp", np.zeros(wq.shape[1], np.int8))
            bias = g.const(f"{name}.b", b.astype(np.float32))
            scale = g.const(f"{name}.w_scale", w_scale)
            inputs = [c, g.const(f"{name}.wq", wq), bias, xq.scale, scale, mask, xq.zero_point, w_zp]
            outs.append(g.op("QAttention", inputs, hint=name, domain=MS_DOMAIN, num_heads=heads))
        return outs


@dataclass
class StaticInt8Emitter(_Int8Emitter):
    """QuantizeLinear(x) with calibrated constants -> MatMulIntegerToFloat / QAttention."""

    ranges: dict[str, ActivationRange]
    _quantized: dict[tuple[str, float, int], _Quantized] = field(default_factory=dict)

    def _quantize(self, g: GraphBuilder, x: str, name: str) -> _Quantized:
        a_scale, a_zp = self.ranges[name].uint8_params()
        key = (x, float(a_scale), int(a_zp))
        if key not in self._quantized:  # inputs shared by several linears are quantized once
            scale, zp = g.const(f"{name}.a_scale", a_scale), g.const(f"{name}.a_zp", a_zp)
            self._quantized[key] = _Quantized(g.op("QuantizeLinear", [x, scale, zp], hint=f"{name}.q"), scale, zp)
        return self._quantized[key]


class DynamicInt8Emitter(_Int8Emitter):
    """Per-tensor activation scale computed per run (not batch-invariant).

    Linears stay DynamicQuantizeMatMul on each group's fp32 slice (one fused op per group);
    attention quantizes its input with DynamicQuantizeLinear for QAttention.
    """

    def _quantize(self, g: GraphBuilder, x: str, name: str) -> _Quantized:
        return _Quantized(*g.op_n("DynamicQuantizeLinear", [x], 3, hint=f"{name}.q"))

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
