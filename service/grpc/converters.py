"""squeezeserve.v1 messages <-> domain values, in named pairs (`x_from_pb` / `x_to_pb`).

Unset proto3 `optional` fields leave the domain dataclass default in place, so the pipelines'
defaults live in one spot (service.tasks.base), not here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from service.errors import InvalidInput
from service.grpc.generated.squeezeserve.v1 import squeezeserve_pb2 as pb
from service.lifecycle import ModelStatus
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

_ANSWER_OPTIONALS = ("top_k", "doc_stride", "max_answer_len", "max_seq_len", "max_question_len", "align_to_words")


def _set_fields(message: Any, names: Iterable[str]) -> dict[str, Any]:
    """The optional fields the client actually set, by name."""
    return {name: getattr(message, name) for name in names if message.HasField(name)}


# ---- model names ------------------------------------------------------------------------------


def model_from_pb(model: str) -> str | None:
    """An empty `model` asks for the task's default model."""
    return model or None


def model_to_pb(model: str | None) -> str:
    return model or ""


# ---- inputs -----------------------------------------------------------------------------------


def text_inputs_from_pb(inputs: Iterable[pb.TextInput]) -> list[TextInput]:
    return [TextInput(i.text, i.text_pair if i.HasField("text_pair") else None) for i in inputs]


def text_inputs_to_pb(inputs: Sequence[TextInput]) -> list[pb.TextInput]:
    return [pb.TextInput(text=i.text, text_pair=i.text_pair) for i in inputs]


def token_inputs_from_pb(inputs: Iterable[str]) -> list[TextInput]:
    return [TextInput(text) for text in inputs]


def token_inputs_to_pb(inputs: Sequence[TextInput]) -> list[str]:
    return [i.text for i in inputs]


def qa_inputs_from_pb(inputs: Iterable[pb.QAInput]) -> list[QAInput]:
    return [QAInput(i.question, i.context) for i in inputs]


def qa_inputs_to_pb(inputs: Sequence[QAInput]) -> list[pb.QAInput]:
    return [pb.QAInput(question=i.question, context=i.context) for i in inputs]


# ---- parameters -------------------------------------------------------------------------------


def classify_params_from_pb(p: pb.ClassifyParameters) -> ClassifyParams:
    fields = _set_fields(p, ("top_k", "function_to_apply"))
    if p.all_labels:
        if "top_k" in fields:
            raise InvalidInput("set either parameters.top_k or parameters.all_labels, not both")
        fields["top_k"] = None  # the pipeline's top_k=None: every label, sorted
    return ClassifyParams(**fields, truncation=p.truncation)


def classify_params_to_pb(params: ClassifyParams) -> pb.ClassifyParameters:
    return pb.ClassifyParameters(
        top_k=params.top_k,
        all_labels=params.top_k is None,
        function_to_apply=params.function_to_apply,
        truncation=params.truncation,
    )


def token_params_from_pb(p: pb.TokenClassifyParameters) -> TokenClassifyParams:
    fields = _set_fields(p, ("aggregation_strategy", "stride"))
    if p.ignore_labels_set or p.ignore_labels:
        fields["ignore_labels"] = tuple(p.ignore_labels)
    return TokenClassifyParams(**fields, truncation=p.truncation)


def token_params_to_pb(params: TokenClassifyParams) -> pb.TokenClassifyParameters:
    return pb.TokenClassifyParameters(
        aggregation_strategy=params.aggregation_strategy,
        ignore_labels=list(params.ignore_labels),
        ignore_labels_set=True,
        stride=params.stride,
        truncation=params.truncation,
    )


def answer_params_from_pb(p: pb.AnswerParameters) -> AnswerParams:
    return AnswerParams(**_set_fields(p, _ANSWER_OPTIONALS), handle_impossible_answer=p.handle_impossible_answer)


def answer_params_to_pb(params: AnswerParams) -> pb.AnswerParameters:
    return pb.AnswerParameters(
        **{name: getattr(params, name) for name in _ANSWER_OPTIONALS},
        handle_impossible_answer=params.handle_impossible_answer,
    )


# ---- results (one list per input) -------------------------------------------------------------


def label_scores_from_pb(results: Iterable[pb.LabelScores]) -> list[list[LabelScore]]:
    return [[LabelScore(x.label, x.score) for x in r.items] for r in results]


def label_scores_to_pb(results: Sequence[Sequence[LabelScore]]) -> list[pb.LabelScores]:
    return [pb.LabelScores(items=[pb.LabelScore(label=x.label, score=x.score) for x in r]) for r in results]


def _entity_from_pb(e: pb.Entity) -> Entity:
    def opt(name: str) -> Any:
        return getattr(e, name) if e.HasField(name) else None

    return Entity(
        score=e.score,
        word=e.word,
        start=opt("start"),
        end=opt("end"),
        entity=opt("entity"),
        entity_group=opt("entity_group"),
        index=opt("index"),
    )


def _entity_to_pb(e: Entity) -> pb.Entity:
    return pb.Entity(
        entity=e.entity,
        entity_group=e.entity_group,
        score=e.score,
        word=e.word,
        start=e.start,
        end=e.end,
        index=e.index,
    )


def entities_from_pb(results: Iterable[pb.Entities]) -> list[list[Entity]]:
    return [[_entity_from_pb(e) for e in r.items] for r in results]


def entities_to_pb(results: Sequence[Sequence[Entity]]) -> list[pb.Entities]:
    return [pb.Entities(items=[_entity_to_pb(e) for e in r]) for r in results]


def answers_from_pb(results: Iterable[pb.Answers]) -> list[list[Answer]]:
    return [[Answer(a.answer, a.score, a.start, a.end) for a in r.items] for r in results]


def answers_to_pb(results: Sequence[Sequence[Answer]]) -> list[pb.Answers]:
    return [
        pb.Answers(items=[pb.AnswerItem(answer=a.answer, score=a.score, start=a.start, end=a.end) for a in r])
        for r in results
    ]


# ---- models -----------------------------------------------------------------------------------


def model_infos_from_pb(models: Iterable[pb.ModelInfo]) -> list[ModelStatus]:
    return [
        ModelStatus(
            name=m.name,
            task=m.task,
            labels=list(m.labels),
            max_seq_len=m.max_seq_len,
            trained=m.trained,
            ready=m.ready,
            precision=m.precision,
            state=m.state,
            reason=m.reason,
        )
        for m in models
    ]


def model_infos_to_pb(statuses: Iterable[ModelStatus]) -> list[pb.ModelInfo]:
    return [
        pb.ModelInfo(
            name=s.name,
            task=s.task,
            labels=s.labels,
            max_seq_len=s.max_seq_len,
            trained=s.trained,
            ready=s.ready,
            precision=s.precision,
            state=s.state,
            reason=s.reason,
        )
        for s in statuses
    ]
