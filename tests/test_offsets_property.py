"""Property tests: whatever the text and whatever the model says, character spans slice the original text.

The model is replaced by random logits drawn per example (offsets do not depend on what the model
predicts, and random labels reach every aggregation path); tokenization is the real checkpoint's.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from service.batching.rows import RowOutput
from service.tasks.base import AnswerParams, Limits, ModelInfo, Prepared, QAInput, TextInput
from service.tasks.base import TokenClassifyParams as NerParams
from service.tasks.question_answering import QuestionAnsweringHandler
from service.tasks.token_classification import TokenClassificationHandler
from service.tokenization import TextTokenizer

NER_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
MAX_SEQ_LEN = 48
ALPHABET = list("abcdefghijklmnopqrstuvwxyz ABCXYZ   0123 éèüöøÅñçßİ東京中文한🙂👍 .,!?'\"-#()\t\n") + [
    "\u0301",  # combining acute: NFD accents
    "\u0308",
    "\u200b",  # zero-width space
    "\x07",  # a control character the normalizer drops
]
TEXTS = st.one_of(st.text(alphabet=ALPHABET, min_size=1, max_size=160), st.text(min_size=1, max_size=80)).filter(
    lambda s: bool(s.strip())
)
QUESTIONS = st.text(alphabet=ALPHABET, min_size=1, max_size=20).filter(lambda s: bool(s.strip()))
SETTINGS = settings(
    max_examples=50, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.filter_too_much]
)


@pytest.fixture(scope="module")
def ner_tokenizer(checkpoints: dict[str, Path]) -> TextTokenizer:
    return TextTokenizer.from_file(checkpoints["token-classification"] / "tokenizer.json", MAX_SEQ_LEN)


@pytest.fixture(scope="module")
def qa_tokenizer(checkpoints: dict[str, Path]) -> TextTokenizer:
    return TextTokenizer.from_file(checkpoints["question-answering"] / "tokenizer.json", MAX_SEQ_LEN)


@pytest.fixture(scope="module")
def normalizer(checkpoints: dict[str, Path]) -> Tokenizer:
    return Tokenizer.from_file(str(checkpoints["token-classification"] / "tokenizer.json"))


def random_outputs(prepared: Prepared, heads: int, width: int | None, seed: int) -> list[RowOutput]:
    """Logits per row: [length, width] (one head) or `heads` vectors of [length]."""
    rng = np.random.default_rng(seed)
    if width is not None:
        return [[rng.normal(0, 3, (row.length, width)).astype(np.float32)] for row in prepared.rows]
    return [[rng.normal(0, 3, row.length).astype(np.float32) for _ in range(heads)] for row in prepared.rows]


def comparable(text: str, normalizer: Tokenizer) -> str:
    """What survives the tokenizer's normalisation, without whitespace (decoded words re-space pieces)."""
    normalized = normalizer.normalizer.normalize_str(text) if normalizer.normalizer else text
    # The WordPiece decoder's cleanup turns " do not" into " don't"; apostrophes are not compared.
    return "".join(normalized.split()).replace("'", "")


@SETTINGS
@given(
    text=TEXTS, strategy=st.sampled_from(["none", "simple", "first", "average", "max"]), seed=st.integers(0, 2**32 - 1)
)
def test_entity_spans_slice_the_text(
    ner_tokenizer: TextTokenizer, normalizer: Tokenizer, text: str, strategy: str, seed: int
) -> None:
    info = ModelInfo(dict(enumerate(NER_LABELS)), None, MAX_SEQ_LEN)
    handler = TokenClassificationHandler(ner_tokenizer, info, Limits())
    stride = None if strategy == "none" else 8
    params = NerParams(aggregation_strategy=strategy, ignore_labels=(), stride=stride, truncation=True)
    prepared = handler.preprocess([TextInput(text)], params)
    (entities,) = handler.postprocess(prepared, random_outputs(prepared, 1, len(NER_LABELS), seed), params)
    for entity in entities:
        assert entity.start is not None and entity.end is not None
        assert 0 <= entity.start <= entity.end <= len(text)
        if strategy != "none":
            covered = comparable(text[entity.start : entity.end], normalizer)
            # A group may open on a '##piece' of a word; the decoder keeps that first prefix.
            word = comparable(entity.word.removeprefix("##"), normalizer)
            assert word == covered, (entity, text[entity.start : entity.end])


@SETTINGS
@example(question="0", context="\u0301", seed=0, align=True, top_k=3)  # exactly top_k candidate spans
@given(
    question=QUESTIONS,
    context=TEXTS,
    seed=st.integers(0, 2**32 - 1),
    align=st.booleans(),
    top_k=st.integers(1, 5),
)
def test_answers_are_slices_of_the_context(
    qa_tokenizer: TextTokenizer, question: str, context: str, seed: int, align: bool, top_k: int
) -> None:
    info = ModelInfo({0: "start", 1: "end"}, None, MAX_SEQ_LEN)
    handler = QuestionAnsweringHandler(qa_tokenizer, info, Limits())
    params = AnswerParams(top_k=top_k, doc_stride=6, align_to_words=align, handle_impossible_answer=seed % 2 == 0)
    prepared = handler.preprocess([QAInput(question, context)], params)
    (answers,) = handler.postprocess(prepared, random_outputs(prepared, 2, None, seed), params)
    assert 1 <= len(answers) <= top_k
    for answer in answers:
        assert 0 <= answer.start <= answer.end <= len(context)
        assert answer.answer == context[answer.start : answer.end]
    scores = [answer.score for answer in answers]
    assert scores == sorted(scores, reverse=True)


@SETTINGS
@given(text=TEXTS, pair=st.one_of(st.none(), TEXTS))
def test_token_offsets_lie_within_their_sequence(ner_tokenizer: TextTokenizer, text: str, pair: str | None) -> None:
    encoded = ner_tokenizer.encode(text, pair)
    for (start, end), sequence in zip(encoded.offsets, encoded.sequence_ids):
        if sequence is not None:
            source = text if sequence == 0 else pair
            assert source is not None and 0 <= start <= end <= len(source)


def test_windows_are_the_same_when_computed_from_many_threads(ner_tokenizer: TextTokenizer) -> None:
    """Each truncation setting has its own tokenizer copy, so concurrent callers never see another's setting."""
    text = "Maria Gonzalez joined the board of Northwind Traders in March 2021 and then left. " * 4
    settings_ = [(MAX_SEQ_LEN, stride) for stride in (0, 3, 8, 20)] + [(24, 5), (16, 2)]

    def windows(setting: tuple[int, int]) -> list[tuple[int, ...]]:
        return [tuple(w.ids.tolist()) for w in ner_tokenizer.encode_windows(text, *setting)]

    expected = {setting: windows(setting) for setting in settings_}
    with ThreadPoolExecutor(max_workers=6) as pool:
        got = list(pool.map(windows, settings_ * 25))
    assert got == [expected[setting] for setting in settings_ * 25]
