"""Pydantic models of the /v1 task API: request bodies, parameters and pipeline-shaped results."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from service.api.body import JsonBody, StrictModel
from service.tasks.base import AnswerParams, ClassifyParams, TokenClassifyParams

MODEL_FIELD = Field(None, description="Model name; omitted: the first model serving the task", examples=["sst2"])


class TextPairInput(StrictModel):
    text: str
    text_pair: str | None = None


class QAItem(StrictModel):
    question: str
    context: str


ClassifyInputs = str | TextPairInput | list[str | TextPairInput]
TokenInputs = str | list[str]
AnswerInputs = QAItem | list[QAItem]


# Defaults come from the parameter dataclasses of service/tasks/base.py, their one source.
_CLS, _NER, _QA = ClassifyParams(), TokenClassifyParams(), AnswerParams()


class ClassifyParameters(StrictModel):
    top_k: int | None = Field(_CLS.top_k, ge=1, description="Labels per input; null: every label, sorted")
    function_to_apply: str | None = Field(
        _CLS.function_to_apply, description="softmax | sigmoid | none; null: from the model"
    )
    truncation: bool = Field(_CLS.truncation, description="Truncate inputs longer than the model instead of failing")


class TokenClassifyParameters(StrictModel):
    aggregation_strategy: str = Field(_NER.aggregation_strategy, description="none | simple | first | average | max")
    ignore_labels: list[str] | None = Field(None, description=f"Labels left out; null: {list(_NER.ignore_labels)}")
    stride: int | None = Field(_NER.stride, ge=0, description="Overlap of windows over long texts (needs aggregation)")
    truncation: bool = _NER.truncation


class AnswerParameters(StrictModel):
    top_k: int = Field(_QA.top_k, ge=1)
    doc_stride: int | None = Field(_QA.doc_stride, ge=0)
    max_answer_len: int = Field(_QA.max_answer_len, ge=1)
    max_seq_len: int | None = Field(_QA.max_seq_len, ge=1)
    max_question_len: int = Field(_QA.max_question_len, ge=1)
    handle_impossible_answer: bool = _QA.handle_impossible_answer
    align_to_words: bool = _QA.align_to_words


class ClassifyRequest(JsonBody):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"inputs": ["I loved it", "Dull."], "parameters": {"top_k": None}}]}
    )
    inputs: ClassifyInputs
    model: str | None = MODEL_FIELD
    parameters: ClassifyParameters = Field(default_factory=lambda: ClassifyParameters.model_validate({}))


class TokenClassifyRequest(JsonBody):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"inputs": "Ada Lovelace lived in London", "parameters": {"aggregation_strategy": "simple"}}]
        }
    )
    inputs: TokenInputs
    model: str | None = MODEL_FIELD
    parameters: TokenClassifyParameters = Field(default_factory=lambda: TokenClassifyParameters.model_validate({}))


class AnswerRequest(JsonBody):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"inputs": {"question": "Where?", "context": "It was signed in Vienna."}, "parameters": {}}]
        }
    )
    inputs: AnswerInputs
    model: str | None = MODEL_FIELD
    parameters: AnswerParameters = Field(default_factory=lambda: AnswerParameters.model_validate({}))


class LabelScoreOut(BaseModel):
    label: str
    score: float


class TokenEntityOut(BaseModel):
    """One token, without aggregation."""

    entity: str
    score: float
    index: int
    word: str
    start: int | None
    end: int | None


class EntityGroupOut(BaseModel):
    """A group of tokens, with an aggregation strategy."""

    entity_group: str
    score: float
    word: str
    start: int | None
    end: int | None


class AnswerOut(BaseModel):
    answer: str
    score: float
    start: int
    end: int


class ClassifyResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"model": "sst2", "results": [[{"label": "POSITIVE", "score": 0.98}]]}]}
    )
    model: str
    results: list[list[LabelScoreOut]] = Field(description="One list per input, best first")


class TokenClassifyResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "ner",
                    "results": [[{"entity_group": "LOC", "score": 0.99, "word": "London", "start": 22, "end": 28}]],
                }
            ]
        }
    )
    model: str
    results: list[list[TokenEntityOut | EntityGroupOut]] = Field(description="One list per input")


class AnswerResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"model": "squad", "results": [[{"answer": "Vienna", "score": 0.9, "start": 17, "end": 23}]]}]
        }
    )
    model: str
    results: list[list[AnswerOut]] = Field(description="One list per input, best first")
