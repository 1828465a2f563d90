"""Every bad input or parameter is an InvalidInput whose message says what is wrong (no model needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from service.errors import InvalidInput
from service.tasks.base import (
    AnswerParams,
    ClassifyParams,
    Limits,
    ModelInfo,
    QAInput,
    TextInput,
    TokenClassifyParams,
)
from service.tasks.question_answering import QuestionAnsweringHandler
from service.tasks.sequence_classification import SequenceClassificationHandler
from service.tasks.token_classification import TokenClassificationHandler
from service.tokenization import TextTokenizer

MAX_SEQ_LEN = 32
LIMITS = Limits(max_inputs=3, max_chars=400)
LONG = "the committee postponed its vote until the budget figures were checked again " * 3  # > 32 tokens


def tokenizer_for(checkpoints: dict[str, Path], task: str) -> TextTokenizer:
    return TextTokenizer.from_file(checkpoints[task] / "tokenizer.json", MAX_SEQ_LEN)


@pytest.fixture(scope="module")
def classify(checkpoints: dict[str, Path]) -> SequenceClassificationHandler:
    info = ModelInfo({0: "NEGATIVE", 1: "POSITIVE"}, None, MAX_SEQ_LEN)
    return SequenceClassificationHandler(tokenizer_for(checkpoints, "sequence-classification"), info, LIMITS)


@pytest.fixture(scope="module")
def ner(checkpoints: dict[str, Path]) -> TokenClassificationHandler:
    info = ModelInfo({0: "O", 1: "B-PER", 2: "I-PER"}, None, MAX_SEQ_LEN)
    return TokenClassificationHandler(tokenizer_for(checkpoints, "token-classification"), info, LIMITS)


@pytest.fixture(scope="module")
def qa(checkpoints: dict[str, Path]) -> QuestionAnsweringHandler:
    info = ModelInfo({0: "start", 1: "end"}, None, MAX_SEQ_LEN)
    return QuestionAnsweringHandler(tokenizer_for(checkpoints, "question-answering"), info, LIMITS)


def rejects(handler: Any, inputs: list[Any], params: Any, match: str) -> None:
    with pytest.raises(InvalidInput, match=match) as caught:
        handler.preprocess(inputs, params)
    assert caught.value.kind == "invalid_input" and not isinstance(caught.value, ValueError)


# ---- common ---------------------------------------------------------------------------------

COMMON = [
    ([], "no inputs"),
    (["a", "b", "c", "d"], "too many inputs: 4 given, at most 3"),
    ([""], r"inputs\[0\]\.\w+ is empty"),
    (["ok", " \t\n "], r"inputs\[1\]\.\w+ is empty"),
    (["x" * 401], r"401 characters long, over the limit of 400"),
]


@pytest.mark.parametrize(("texts", "match"), COMMON)
def test_classification_common_checks(classify: Any, texts: list[str], match: str) -> None:
    rejects(classify, [TextInput(t) for t in texts], ClassifyParams(), match)


@pytest.mark.parametrize(("texts", "match"), COMMON)
def test_token_classification_common_checks(ner: Any, texts: list[str], match: str) -> None:
    rejects(ner, [TextInput(t) for t in texts], TokenClassifyParams(), match)


@pytest.mark.parametrize(("texts", "match"), COMMON)
def test_question_answering_common_checks(qa: Any, texts: list[str], match: str) -> None:
    rejects(qa, [QAInput(t, "some context") for t in texts], AnswerParams(), match)
    rejects(qa, [QAInput("a question?", t) for t in texts], AnswerParams(), match.replace(r"\w+", "context"))


def test_empty_pair_and_question_fields_are_named(classify: Any, qa: Any) -> None:
    rejects(classify, [TextInput("fine", "  ")], ClassifyParams(), r"inputs\[0\]\.text_pair is empty")
    rejects(qa, [QAInput("", "ctx")], AnswerParams(), r"inputs\[0\]\.question is empty")
    rejects(qa, [QAInput("q", "\n")], AnswerParams(), r"inputs\[0\]\.context is empty")


# ---- sequence classification ----------------------------------------------------------------


def test_classification_too_long_names_token_count_and_limit(classify: Any) -> None:
    length = classify.tokenizer.encode(LONG).length
    rejects(classify, [TextInput(LONG)], ClassifyParams(), rf"{length} tokens long, over the model's limit of 32")
    rejects(classify, [TextInput("short", LONG)], ClassifyParams(), r"inputs\[0\] is \d+ tokens long")
    prepared = classify.preprocess([TextInput(LONG), TextInput("short", LONG)], ClassifyParams(truncation=True))
    assert [row.length for row in prepared.rows] == [32, 32]


@pytest.mark.parametrize(
    ("params", "match"),
    [
        (ClassifyParams(top_k=0), "top_k must be >= 1"),
        (ClassifyParams(top_k=True), "top_k must be an integer"),
        (ClassifyParams(function_to_apply="relu"), "function_to_apply must be one of softmax, sigmoid, none"),
    ],
)
def test_classification_bad_params(classify: Any, params: ClassifyParams, match: str) -> None:
    rejects(classify, [TextInput("fine")], params, match)


# ---- token classification -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "match"),
    [
        (TokenClassifyParams(aggregation_strategy="longest"), "aggregation_strategy must be one of"),
        (TokenClassifyParams(stride=4), "stride needs an aggregation_strategy other than none"),
        (TokenClassifyParams(aggregation_strategy="first", stride=32), r"stride \(32\) must be less than .* \(32\)"),
        (TokenClassifyParams(aggregation_strategy="first", stride=-1), "stride must be >= 0"),
        (TokenClassifyParams(ignore_labels="O"), "ignore_labels must be a list"),  # type: ignore[arg-type]
    ],
)
def test_token_classification_bad_params(ner: Any, params: TokenClassifyParams, match: str) -> None:
    rejects(ner, [TextInput("fine")], params, match)


def test_token_classification_too_long_without_stride_or_truncation(ner: Any) -> None:
    rejects(ner, [TextInput(LONG)], TokenClassifyParams(), r"over the model's limit of 32 tokens; set a stride")
    assert len(ner.preprocess([TextInput(LONG)], TokenClassifyParams(truncation=True)).rows) == 1
    windows = ner.preprocess([TextInput(LONG)], TokenClassifyParams(aggregation_strategy="simple", stride=4)).rows
    assert len(windows) > 1 and all(row.length <= 32 for row in windows)


def test_token_classification_stride_without_room_to_advance(ner: Any) -> None:
    # 32-token windows hold 30 text tokens; the tokenizer cannot step with an overlap of 30.
    params = TokenClassifyParams(aggregation_strategy="simple", stride=30)
    rejects(ner, [TextInput(LONG)], params, "stride must be below 30")
    assert len(ner.preprocess([TextInput("a short text")], params).rows) == 1  # no window needed: accepted


# ---- question answering ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "match"),
    [
        (AnswerParams(top_k=0), "top_k must be >= 1"),
        (AnswerParams(max_answer_len=0), "max_answer_len must be >= 1"),
        (AnswerParams(max_seq_len=33), "max_seq_len must be <= 32"),
        (AnswerParams(max_seq_len=2), "max_seq_len must be >= 4"),
        (AnswerParams(doc_stride=40), r"doc_stride \(40\) is larger than max_seq_len \(32\)"),
        (AnswerParams(doc_stride=-1), "doc_stride must be >= 0"),
    ],
)
def test_question_answering_bad_params(qa: Any, params: AnswerParams, match: str) -> None:
    rejects(qa, [QAInput("who?", "Ana did.")], params, match)


def test_question_too_long_for_the_window(qa: Any) -> None:
    question = "what did the committee postpone until the budget figures were checked again and why " * 2
    rejects(qa, [QAInput(question, LONG)], AnswerParams(), "the question is too long")


def test_doc_stride_too_large_for_the_room_left_by_the_question(qa: Any) -> None:
    question = "what did the committee postpone until the budget figures were checked?"  # 13 tokens
    rejects(qa, [QAInput(question, LONG)], AnswerParams(doc_stride=16), r"doc_stride 16 is too large.* below 16")
    assert len(qa.preprocess([QAInput(question, "Nothing.")], AnswerParams(doc_stride=16)).rows) == 1
