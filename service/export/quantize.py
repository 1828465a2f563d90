"""Int8 linear emitters: weight quantization, calibration taps, static and dynamic activations.

Only the encoder's linear layers go through these; embeddings, attention, the pooler and the
classifier stay fp32 (quantizing the head is where most int8 error comes from).

- static (default): uint8 activations with scale/zero-point calibrated offline, per-channel int8
  weights. Every row is quantized with the same constants, so a row's result does not depend on
  its batch neighbours or padding (batch invariance).
- dynamic: one activation scale per tensor computed at run time. No calibration, but a row's
  result moves with the rest of its batch; kept as an explicit option for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from service.export.graph import MS_DOMAIN, Fp32Emitter, GraphBuilder

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

    def emit(
        self, g: GraphBuilder, x: str, weight: np.ndarray, bias: np.ndarray, name: str
    ) -> tuple[str, np.ndarray | None]:
        self.taps[name] = x
        if x not in g.extra_outputs:
            g.extra_outputs.append(x)
        return super().emit(g, x, weight, bias, name)


@dataclass
class StaticInt8Emitter:
    """QuantizeLinear(x) -> MatMulIntegerToFloat(x_q, W_q, scales, zero points, bias)."""

    ranges: dict[str, ActivationRange]
    _quantized: dict[tuple[str, float, int], str] = field(default_factory=dict)

    def emit(
        self, g: GraphBuilder, x: str, weight: np.ndarray, bias: np.ndarray, name: str
    ) -> tuple[str, np.ndarray | None]:
        a_scale, a_zp = self.ranges[name].uint8_params()
        key = (x, float(a_scale), int(a_zp))
        scale_name = g.const(f"{name}.a_scale", a_scale)
        zp_name = g.const(f"{name}.a_zp", a_zp)
        if key not in self._quantized:  # inputs shared by several linears are quantized once
            self._quantized[key] = g.op("QuantizeLinear", [x, scale_name, zp_name], hint=f"{name}.q")
        wq, w_scale = quantize_weight(weight)
        inputs = [
            self._quantized[key],
            g.const(f"{name}.wq", wq),
            scale_name,
            g.const(f"{name}.w_scale", w_scale),
            zp_name,
            g.const(f"{name}.w_zp", np.zeros(wq.shape[1], dtype=np.int8)),
            g.const(f"{name}.bias", bias.astype(np.float32)),
        ]
        return g.op("MatMulIntegerToFloat", inputs, hint=name, domain=MS_DOMAIN), None


class DynamicInt8Emitter:
    """DynamicQuantizeMatMul: per-tensor activation scale computed per run (not batch-invariant)."""

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
