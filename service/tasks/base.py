"""Domain types shared by the tasks and the service: inputs, params with THE defaults, results.

A request becomes a list of EncodedRows (service/batching/rows.py: one per text, or one per
window for long QA/NER inputs). The batcher only sees rows; the task that made them turns the
rows' outputs back into pipeline-shaped results per input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from service.batching.rows import EncodedRow, RowOutput


@dataclass(frozen=True)
class Prepared:
    """Rows for the batcher plus whatever the task needs to rebuild results (opaque to others).

    row_owner[i] is the index of the request input that row i belongs to.
    """

    rows: list[EncodedRow]
    row_owner: list[int]
    context: Any = None


@dataclass(frozen=True)
class Limits:
    """Request limits, from settings; a violation raises InvalidInput with a clear message."""

    max_inputs: int = 64
    max_chars: int = 100_000


# ---- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextInput:
    text: str
    text_pair: str | None = None


@dataclass(frozen=True)
class QAInput:
    question: str
    context: str


def text_chars(inputs: Sequence[object]) -> int | None:
    """Characters of text the inputs carry (what tokenizing them costs, roughly); None if an input
    is not one of the text inputs above (its cost is unknown)."""
    total = 0
    for item in inputs:
        if isinstance(item, TextInput):
            parts: tuple[object, ...] = (item.text, item.text_pair)
        elif isinstance(item, QAInput):
            parts = (item.question, item.context)
        else:
            return None
        total += sum(len(part) for part in parts if isinstance(part, str))
    return total


# ---- parameters (names and defaults follow the transformers 4.57 pipelines) ------------------


@dataclass(frozen=True)
class ClassifyParams:
    top_k: int | None = 1  # None: all labels, sorted by score
    function_to_apply: str | None = None  # "softmax" | "sigmoid" | "none"; None: from problem_type
    truncation: bool = False  # like the pipeline: no truncation unless asked, too long -> error


@dataclass(frozen=True)
class TokenClassifyParams:
    aggregation_strategy: str = "none"  # none | simple | first | average | max
    ignore_labels: tuple[str, ...] = ("O",)
    stride: int | None = None  # overlapping tokens between windows; needs aggregation != none
    truncation: bool = False  # without stride: too long -> error unless truncation is asked


@dataclass(frozen=True)
class AnswerParams:
    top_k: int = 1
    doc_stride: int | None = None  # default min(max_seq_len // 2, 128)
    max_answer_len: int = 15
    max_seq_len: int | None = None  # default min(model max_seq_len, 384)
    max_question_len: int = 64
    handle_impossible_answer: bool = False
    align_to_words: bool = True


# ---- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelScore:
    label: str
    score: float


@dataclass(frozen=True)
class Entity:
    """A token (aggregation none: `entity`, `index`) or a group (`entity_group`)."""

    score: float
    word: str
    start: int | None
    end: int | None
    entity: str | None = None
    entity_group: str | None = None
    index: int | None = None


@dataclass(frozen=True)
class Answer:
    answer: str
    score: float
    start: int
    end: int


InT = TypeVar("InT", contravariant=True)
ParamsT = TypeVar("ParamsT", contravariant=True)
OutT = TypeVar("OutT")


class TaskHandler(Protocol, Generic[InT, ParamsT, OutT]):
    """Pure, synchronous pre/post-processing (the service runs both off the event loop)."""

    def preprocess(self, inputs: Sequence[InT], params: ParamsT) -> Prepared: ...

    def postprocess(self, prepared: Prepared, outputs: Sequence[RowOutput], params: ParamsT) -> list[list[OutT]]: ...


@dataclass(frozen=True)
class ModelInfo:
    """What a task handler needs to know about its model (from the manifest)."""

    id2label: dict[int, str]
    problem_type: str | None
    max_seq_len: int
    extra: dict[str, Any] = field(default_factory=dict)
