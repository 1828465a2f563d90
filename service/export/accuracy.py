"""int8 vs fp32 on held-out text: per-task decisions, their agreement, and the export's accuracy gate.

A decision is what the served model answers: a row's label (classification), each real token's
label (token classification), a row's best answer span (QA). Untrained and near-tied decisions
flip on any perturbation, so the gate counts agreement only where fp32 is decisive: its top-1
probability leads the runner-up by at least DECISIVE_MARGIN. Every figure is measured on text
that calibration did not see.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from service.export.calibration import Feeds
from service.manifest import Int8Accuracy

DECISIVE_MARGIN = 0.05
DEFAULT_MIN_AGREEMENT = 0.995
# Chosen from measurements (docs/ARCHITECTURE.md, "int8 accuracy"): plain base-size exports of
# the three tasks stay under ~0.02 held-out, outlier-bearing ones without mitigation reach 0.06+.
DEFAULT_MAX_PROB_DELTA = 0.02
# A mitigated int8 graph must keep this share of plain int8's throughput (service/export/int8.py).
DEFAULT_MIN_SPEED = 0.9
MAX_ANSWER_TOKENS = 15  # the QA pipeline's default max_answer_len


@dataclass(frozen=True)
class AccuracyGate:
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    max_prob_delta: float = DEFAULT_MAX_PROB_DELTA

    def failures(self, figures: Int8Accuracy) -> list[str]:
        found = []
        if figures.decisive_agreement < self.min_agreement:
            found.append(
                f"agreement on decisive {figures.unit}s {figures.decisive_agreement:.2%} < {self.min_agreement:.2%}"
            )
        if figures.max_prob_delta > self.max_prob_delta:
            found.append(f"max |Δ probability| {figures.max_prob_delta:.3f} > {self.max_prob_delta:.3f}")
        return found


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _margin(p: np.ndarray) -> np.ndarray:
    top2 = np.sort(p, axis=-1)[..., -2:]
    return top2[..., 1] - top2[..., 0]


@dataclass
class _Tally:
    """Running counts over batches (decisions, agreement, decisive subset, errors)."""

    rows: int = 0
    total: int = 0
    agree: int = 0
    decisive: int = 0
    decisive_agree: int = 0
    max_prob: float = 0.0
    max_logit: float = 0.0
    extra_hits: int = 0  # entity matches (NER) or start/end matches (QA)
    extra_total: int = 0
    extra_other: int = 0  # NER: entities found by int8

    def decisions(self, ref: np.ndarray, got: np.ndarray, margin: np.ndarray) -> None:
        same, sure = ref == got, margin >= DECISIVE_MARGIN
        self.total += int(same.size)
        self.agree += int(same.sum())
        self.decisive += int(sure.sum())
        self.decisive_agree += int((same & sure).sum())

    def errors(self, prob_deltas: Iterable[np.ndarray], logit_deltas: Iterable[np.ndarray]) -> None:
        self.max_prob = max([self.max_prob, *(float(np.abs(d).max(initial=0.0)) for d in prob_deltas)])
        self.max_logit = max([self.max_logit, *(float(np.abs(d).max(initial=0.0)) for d in logit_deltas)])


def _classification(t: _Tally, fp32: list[np.ndarray], int8: list[np.ndarray]) -> None:
    p, q = softmax(fp32[0]), softmax(int8[0])
    t.decisions(p.argmax(-1), q.argmax(-1), _margin(p))
    t.errors([p - q], [fp32[0] - int8[0]])


def entities(labels: Iterable[str]) -> set[tuple[int, int, str]]:
    """(start, end, type) spans from IOB2 tags; a stray I- opens an entity, as seqeval's default does."""
    found, start, kind = set(), -1, ""
    for i, tag in enumerate([*labels, "O"]):
        prefix, _, name = tag.partition("-") if tag[:2] in ("B-", "I-") else ("", "", tag)
        continues = prefix == "I" and name == kind and start >= 0
        if start >= 0 and not continues:
            found.add((start, i, kind))
            start = -1
        if not continues and tag != "O":
            start, kind = i, name
    return found


def _tokens(t: _Tally, fp32: list[np.ndarray], int8: list[np.ndarray], real: np.ndarray, names: list[str]) -> None:
    p, q = softmax(fp32[0]), softmax(int8[0])
    ref, got = p.argmax(-1), q.argmax(-1)
    t.decisions(ref[real], got[real], _margin(p)[real])
    t.errors([(p - q)[real]], [(fp32[0] - int8[0])[real]])
    for row in range(ref.shape[0]):
        a = entities(names[i] for i in ref[row][real[row]])
        b = entities(names[i] for i in got[row][real[row]])
        t.extra_hits, t.extra_total, t.extra_other = (
            t.extra_hits + len(a & b),
            t.extra_total + len(a),
            t.extra_other + len(b),
        )


def _span_probabilities(start: np.ndarray, end: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """p(s) * p(e) for s <= e < s + MAX_ANSWER_TOKENS over allowed tokens; 0 elsewhere."""
    ps = softmax(np.where(allowed, start, -np.inf))
    pe = softmax(np.where(allowed, end, -np.inf))
    n = allowed.size
    s, e = np.arange(n)[:, None], np.arange(n)[None, :]
    return np.where((s <= e) & (e < s + MAX_ANSWER_TOKENS), np.outer(ps, pe), 0.0)


def _answer_tokens(feeds: Feeds) -> np.ndarray:
    """Context tokens of a pair (segment 1), or every real token of a single text."""
    real = feeds["attention_mask"].astype(bool)
    context = real & (feeds["token_type_ids"] == 1)
    return np.where(context.any(axis=1, keepdims=True), context, real)


def _spans(t: _Tally, fp32: list[np.ndarray], int8: list[np.ndarray], feeds: Feeds) -> None:
    allowed = _answer_tokens(feeds)
    for row in range(allowed.shape[0]):
        ok = allowed[row]
        ref = _span_probabilities(fp32[0][row], fp32[1][row], ok)
        got = _span_probabilities(int8[0][row], int8[1][row], ok)
        flat = ref.ravel()
        t.decisions(np.array([flat.argmax()]), np.array([got.argmax()]), np.array([_margin(flat)]))
        for a, b in zip(fp32, int8):
            pa, pb = softmax(np.where(ok, a[row], -np.inf)), softmax(np.where(ok, b[row], -np.inf))
            t.extra_hits += int(pa.argmax() == pb.argmax())
            t.extra_total += 1
            t.errors([(pa - pb)[ok]], [(a[row] - b[row])[ok]])


UNITS = {"sequence-classification": "row", "token-classification": "token", "question-answering": "span"}


def compare(
    task: str,
    fp32: Iterable[list[np.ndarray]],
    int8: Iterable[list[np.ndarray]],
    data: list[Feeds],
    labels: list[str],
    source: str,
) -> Int8Accuracy:
    """Figures of int8 against fp32 over the held-out batches (outputs in OUTPUT_NAMES order)."""
    t = _Tally()
    for a, b, feeds in zip(fp32, int8, data):
        t.rows += int(feeds["input_ids"].shape[0])
        if task == "sequence-classification":
            _classification(t, a, b)
        elif task == "token-classification":
            _tokens(t, a, b, feeds["attention_mask"].astype(bool), labels)
        else:
            _spans(t, a, b, feeds)
    both = t.extra_total + t.extra_other
    return Int8Accuracy(
        eval_source=source,
        rows=t.rows,
        unit=UNITS[task],
        decisions=t.total,
        decisive=t.decisive,
        agreement=t.agree / max(t.total, 1),
        decisive_agreement=t.decisive_agree / t.decisive if t.decisive else 1.0,
        max_prob_delta=t.max_prob,
        max_logit_delta=t.max_logit,
        entity_f1=(2 * t.extra_hits / both if both else 1.0) if task == "token-classification" else None,
        start_end_agreement=t.extra_hits / t.extra_total if task == "question-answering" else None,
    )
