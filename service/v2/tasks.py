"""How each task looks as v2 tensors: input names, parameters, and result tensors.

- sequence-classification: BYTES `text` [N] (+ optional `text_pair` [N]) -> BYTES `label` [N, k],
  FP32 `score` [N, k] (top_k <= 0 means every label).
- token-classification: BYTES `text` [N] -> BYTES `entities` [N], each a JSON array of the
  pipeline's entity objects (entities are ragged; JSON keeps them whole).
- question-answering: BYTES `question` [N], `context` [N] -> BYTES `answer`, FP32 `score`,
  INT64 `start`, `end`, all [N, k]; inputs with fewer than k answers are padded with
  answer "", score 0, start -1, end -1.
Task parameters travel as request `parameters` with the pipelines' names.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from service.errors import InvalidInput
from service.tasks.base import (
    Answer,
    AnswerParams,
    ClassifyParams,
    Entity,
    LabelScore,
    QAInput,
    TextInput,
    TokenClassifyParams,
)
from service.v2.types import ParamValue, Tensor, TensorMetadata

INPUTS: dict[str, tuple[TensorMetadata, ...]] = {
    "sequence-classification": (TensorMetadata("text", "BYTES", (-1,)), TensorMetadata("text_pair", "BYTES", (-1,))),
    "token-classification": (TensorMetadata("text", "BYTES", (-1,)),),
    "question-answering": (TensorMetadata("question", "BYTES", (-1,)), TensorMetadata("context", "BYTES", (-1,))),
}
OUTPUTS: dict[str, tuple[TensorMetadata, ...]] = {
    "sequence-classification": (TensorMetadata("label", "BYTES", (-1, -1)), TensorMetadata("score", "FP32", (-1, -1))),
    "token-classification": (TensorMetadata("entities", "BYTES", (-1,)),),
    "question-answering": (
        TensorMetadata("answer", "BYTES", (-1, -1)),
        TensorMetadata("score", "FP32", (-1, -1)),
        TensorMetadata("start", "INT64", (-1, -1)),
        TensorMetadata("end", "INT64", (-1, -1)),
    ),
}


def _param(params: dict[str, ParamValue], name: str, kind: type, default: Any) -> Any:
    if name not in params:
        return default
    value = params[name]
    if kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidInput(f"parameter {name!r} must be {kind.__name__}, got {type(value).__name__}")
    return value


# Defaults come from the parameter dataclasses (service/tasks/base.py), their one source.
CLASSIFY, TOKENS, ANSWER = ClassifyParams(), TokenClassifyParams(), AnswerParams()


def classify_params(p: dict[str, ParamValue]) -> ClassifyParams:
    top_k = _param(p, "top_k", int, CLASSIFY.top_k)  # v2 has no null: top_k <= 0 means every label
    return ClassifyParams(
        top_k=None if top_k is None or top_k <= 0 else top_k,
        function_to_apply=_param(p, "function_to_apply", str, CLASSIFY.function_to_apply),
        truncation=_param(p, "truncation", bool, CLASSIFY.truncation),
    )


def token_params(p: dict[str, ParamValue]) -> TokenClassifyParams:
    ignore = _param(p, "ignore_labels", str, None)  # a comma-separated list
    return TokenClassifyParams(
        aggregation_strategy=_param(p, "aggregation_strategy", str, TOKENS.aggregation_strategy),
        ignore_labels=TOKENS.ignore_labels
        if ignore is None
        else tuple(x.strip() for x in ignore.split(",") if x.strip()),
        stride=_param(p, "stride", int, TOKENS.stride),
        truncation=_param(p, "truncation", bool, TOKENS.truncation),
    )


def answer_params(p: dict[str, ParamValue]) -> AnswerParams:
    return AnswerParams(
        top_k=_param(p, "top_k", int, ANSWER.top_k),
        doc_stride=_param(p, "doc_stride", int, ANSWER.doc_stride),
        max_answer_len=_param(p, "max_answer_len", int, ANSWER.max_answer_len),
        max_seq_len=_param(p, "max_seq_len", int, ANSWER.max_seq_len),
        max_question_len=_param(p, "max_question_len", int, ANSWER.max_question_len),
        handle_impossible_answer=_param(p, "handle_impossible_answer", bool, ANSWER.handle_impossible_answer),
        align_to_words=_param(p, "align_to_words", bool, ANSWER.align_to_words),
    )


def text_inputs(columns: dict[str, list[str]]) -> list[TextInput]:
    pairs = columns.get("text_pair")
    return [TextInput(t, pairs[i] if pairs else None) for i, t in enumerate(columns["text"])]


def qa_inputs(columns: dict[str, list[str]]) -> list[QAInput]:
    return [QAInput(q, c) for q, c in zip(columns["question"], columns["context"])]


def _padded(results: Sequence[Sequence[Any]], pick: Callable[[Any], Any], pad: Any) -> tuple[list[Any], int]:
    width = max((len(r) for r in results), default=0)
    flat = [pick(r[j]) if j < len(r) else pad for r in results for j in range(width)]
    return flat, width


def label_tensors(results: list[list[LabelScore]]) -> list[Tensor]:
    labels, k = _padded(results, lambda x: x.label, "")
    scores, _ = _padded(results, lambda x: x.score, 0.0)
    shape = (len(results), k)
    return [Tensor("label", "BYTES", shape, labels), Tensor("score", "FP32", shape, scores)]


def entity_tensors(results: list[list[Entity]]) -> list[Tensor]:
    docs = [json.dumps([entity_dict(e) for e in r], ensure_ascii=False) for r in results]
    return [Tensor("entities", "BYTES", (len(results),), docs)]


def answer_tensors(results: list[list[Answer]]) -> list[Tensor]:
    shape_k = max((len(r) for r in results), default=0)
    shape = (len(results), shape_k)
    return [
        Tensor("answer", "BYTES", shape, _padded(results, lambda a: a.answer, "")[0]),
        Tensor("score", "FP32", shape, _padded(results, lambda a: a.score, 0.0)[0]),
        Tensor("start", "INT64", shape, _padded(results, lambda a: a.start, -1)[0]),
        Tensor("end", "INT64", shape, _padded(results, lambda a: a.end, -1)[0]),
    ]


def entity_dict(entity: Entity) -> dict[str, Any]:
    """The pipeline's object: `entity`+`index` without aggregation, `entity_group` with it."""
    return {k: v for k, v in asdict(entity).items() if v is not None or k in ("start", "end")}


@dataclass(frozen=True)
class V2Task:
    """How one task looks in KServe v2: its tensors, and the conversions both ways."""

    inputs: tuple[TensorMetadata, ...]
    outputs: tuple[TensorMetadata, ...]
    params: Callable[[dict[str, ParamValue]], Any]
    domain_inputs: Callable[[dict[str, list[str]]], list[Any]]
    tensors: Callable[[list[list[Any]]], list[Tensor]]


V2_TASKS: dict[str, V2Task] = {
    "sequence-classification": V2Task(
        INPUTS["sequence-classification"],
        OUTPUTS["sequence-classification"],
        classify_params,
        text_inputs,
        label_tensors,
    ),
    "token-classification": V2Task(
        INPUTS["token-classification"], OUTPUTS["token-classification"], token_params, text_inputs, entity_tensors
    ),
    "question-answering": V2Task(
        INPUTS["question-answering"], OUTPUTS["question-answering"], answer_params, qa_inputs, answer_tensors
    ),
}
