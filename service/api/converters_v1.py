"""/v1 converters in pairs: request models -> domain inputs and params; ServiceResults -> responses."""

from __future__ import annotations

from service.api.schemas_v1 import (
    AnswerInputs,
    AnswerOut,
    AnswerParameters,
    AnswerResponse,
    ClassifyInputs,
    ClassifyParameters,
    ClassifyResponse,
    EntityGroupOut,
    LabelScoreOut,
    TokenClassifyParameters,
    TokenClassifyResponse,
    TokenEntityOut,
    TokenInputs,
)
from service.pipeline import ServiceResult
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
from service.v2.tasks import entity_dict

# ---- sequence classification


def classify_inputs(inputs: ClassifyInputs) -> list[TextInput]:
    items = inputs if isinstance(inputs, list) else [inputs]
    return [TextInput(x) if isinstance(x, str) else TextInput(x.text, x.text_pair) for x in items]


def classify_params(p: ClassifyParameters) -> ClassifyParams:
    return ClassifyParams(top_k=p.top_k, function_to_apply=p.function_to_apply, truncation=p.truncation)


def classify_response(result: ServiceResult[LabelScore]) -> ClassifyResponse:
    results = [[LabelScoreOut(label=x.label, score=float(x.score)) for x in r] for r in result.results]
    return ClassifyResponse(model=result.model, results=results)


# ---- token classification


def token_inputs(inputs: TokenInputs) -> list[TextInput]:
    return [TextInput(t) for t in (inputs if isinstance(inputs, list) else [inputs])]


def token_params(p: TokenClassifyParameters) -> TokenClassifyParams:
    ignore = TokenClassifyParams().ignore_labels if p.ignore_labels is None else tuple(p.ignore_labels)
    return TokenClassifyParams(
        aggregation_strategy=p.aggregation_strategy, ignore_labels=ignore, stride=p.stride, truncation=p.truncation
    )


def entity_out(entity: Entity) -> TokenEntityOut | EntityGroupOut:
    # entity_dict is the pipeline's key rule (entity+index vs entity_group), shared with v2.
    fields = entity_dict(entity)
    fields["score"] = float(fields["score"])
    if "entity_group" in fields:
        return EntityGroupOut.model_validate(fields)
    return TokenEntityOut.model_validate(fields)


def token_response(result: ServiceResult[Entity]) -> TokenClassifyResponse:
    return TokenClassifyResponse(model=result.model, results=[[entity_out(e) for e in r] for r in result.results])


# ---- question answering


def answer_inputs(inputs: AnswerInputs) -> list[QAInput]:
    return [QAInput(x.question, x.context) for x in (inputs if isinstance(inputs, list) else [inputs])]


def answer_params(p: AnswerParameters) -> AnswerParams:
    return AnswerParams(
        top_k=p.top_k,
        doc_stride=p.doc_stride,
        max_answer_len=p.max_answer_len,
        max_seq_len=p.max_seq_len,
        max_question_len=p.max_question_len,
        handle_impossible_answer=p.handle_impossible_answer,
        align_to_words=p.align_to_words,
    )


def answer_response(result: ServiceResult[Answer]) -> AnswerResponse:
    results = [
        [AnswerOut(answer=a.answer, score=float(a.score), start=int(a.start), end=int(a.end)) for a in r]
        for r in result.results
    ]
    return AnswerResponse(model=result.model, results=results)
