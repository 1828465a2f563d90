"""JSON request bodies per workload, written one per line for the wrk Lua script to cycle through."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from loadtest.workloads.texts import TextBuilder

QUESTIONS = [
    "Where did the committee meet after the storm?",
    "Who published the results last year?",
    "When does the museum open on Sundays?",
    "What did the software update fix?",
]
MIXED_LENGTHS = (16, 32, 64, 128, 256, 384)
MIXED_WEIGHTS = (0.25, 0.30, 0.20, 0.15, 0.07, 0.03)  # short-heavy, like chat / review traffic


@dataclass(frozen=True)
class Workload:
    name: str
    path: str  # HTTP route
    bodies: tuple[str, ...]  # JSON texts
    description: str


def _classify_body(model: str, text: str) -> str:
    return json.dumps({"model": model, "inputs": [text]})


def classify_fixed(builder: TextBuilder, model: str, tokens: int, variants: int = 64) -> Workload:
    bodies = tuple(_classify_body(model, builder.text(tokens, seed)) for seed in range(variants))
    return Workload(f"classify-{tokens}", "/v1/classify", bodies, f"1 text of exactly {tokens} tokens per request")


def classify_mixed(builder: TextBuilder, model: str, variants: int = 200, seed: int = 0) -> Workload:
    rng = random.Random(seed)
    lengths = rng.choices(MIXED_LENGTHS, weights=MIXED_WEIGHTS, k=variants)
    bodies = tuple(_classify_body(model, builder.text(n, i)) for i, n in enumerate(lengths))
    mix = ", ".join(f"{n}:{w:.0%}" for n, w in zip(MIXED_LENGTHS, MIXED_WEIGHTS, strict=True))
    return Workload("classify-mixed", "/v1/classify", bodies, f"1 text per request, tokens drawn from {mix}")


def classify_spread(builder: TextBuilder, model: str, kind: str, variants: int = 200, seed: int = 0) -> Workload:
    """`uniform`: 8-256 tokens, uniform (the mix a batcher-less server won on); `tail`: mostly short
    (8-48), with a long tail up to 512 tokens (chat, reviews, tickets)."""
    rng = random.Random(seed)
    if kind == "uniform":
        lengths = [rng.randint(8, 256) for _ in range(variants)]
    elif kind == "tail":
        bands = [(8, 48), (48, 160), (160, 320), (320, 512)]
        picks = rng.choices(bands, weights=[0.60, 0.25, 0.12, 0.03], k=variants)
        lengths = [rng.randint(low, high) for low, high in picks]
    else:
        raise ValueError(f"unknown spread {kind!r}")
    bodies = tuple(_classify_body(model, builder.text(n, i)) for i, n in enumerate(lengths))
    lengths.sort()
    spread = f"{lengths[0]}-{lengths[-1]} tokens ({kind}), median {lengths[len(lengths) // 2]}"
    return Workload(f"mixed-{kind}", "/v1/classify", bodies, f"1 text per request, {spread}")


def ner_fixed(builder: TextBuilder, model: str, tokens: int = 128, variants: int = 64) -> Workload:
    bodies = tuple(
        json.dumps(
            {"model": model, "inputs": builder.text(tokens, s), "parameters": {"aggregation_strategy": "simple"}}
        )
        for s in range(variants)
    )
    return Workload(f"ner-{tokens}", "/v1/token-classify", bodies, f"1 text of {tokens} tokens, aggregation simple")


def qa_long_context(builder: TextBuilder, model: str, context_tokens: int = 1000, variants: int = 32) -> Workload:
    bodies = []
    for s in range(variants):
        question = QUESTIONS[s % len(QUESTIONS)]
        context = builder.pair_context(question, context_tokens, s)
        bodies.append(json.dumps({"model": model, "inputs": {"question": question, "context": context}}))
    return Workload(
        f"qa-{context_tokens}",
        "/v1/answer",
        tuple(bodies),
        f"1 question + a {context_tokens}-token context (several 384-token windows, default doc_stride)",
    )


def texts_of(bodies: Iterable[str]) -> list[str]:
    """Every text of these JSON bodies, in order (`inputs` is one text or a list of them)."""
    texts: list[str] = []
    for body in bodies:
        inputs = json.loads(body)["inputs"]
        texts += [inputs] if isinstance(inputs, str) else inputs
    return texts


def write_bodies(workload: Workload, directory: Path) -> Path:
    """One JSON body per line (JSON never contains a raw newline)."""
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / f"{workload.name}.jsonl"
    out.write_text("".join(body + "\n" for body in workload.bodies), encoding="utf-8")
    return out
