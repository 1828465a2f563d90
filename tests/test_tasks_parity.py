"""The three task handlers, run through ONNX Runtime, against transformers 4.57 pipelines on the same checkpoints.

Both sides run here on the same random-init SqueezeBERT checkpoints (fp32 exports, so only the
pre/post-processing semantics are compared): labels, entity groups, words, spans and answers must
be identical and scores agree within 1e-4.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import transformers
from transformers import AutoTokenizer

from service.export.exporter import ExportRequest, export_model
from service.export.progress import Progress
from service.manifest import read_manifest
from service.runtime.layout import make_feeds, split_outputs
from service.runtime.session import create_session
from service.tasks.base import (
    AnswerParams,
    ClassifyParams,
    Limits,
    ModelInfo,
    Prepared,
    QAInput,
    RowOutput,
    TextInput,
    TokenClassifyParams,
)
from service.tasks.question_answering import QuestionAnsweringHandler
from service.tasks.sequence_classification import SequenceClassificationHandler
from service.tasks.token_classification import TokenClassificationHandler
from service.tokenization import TextTokenizer

# The QA pipeline feeds a torch tensor to np.array (a numpy 2 copy-keyword DeprecationWarning).
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
SCORE_TOLERANCE = 1e-4
# Small windows so long texts need several of them; the pipeline side gets the same model_max_length.
WINDOW = {"sequence-classification": 32, "token-classification": 32, "question-answering": 512}
HANDLERS = {
    "sequence-classification": SequenceClassificationHandler,
    "token-classification": TokenClassificationHandler,
    "question-answering": QuestionAnsweringHandler,
}
PIPELINE_TASKS = {
    "sequence-classification": "text-classification",
    "token-classification": "token-classification",
    "question-answering": "question-answering",
}
HEADS = {
    "sequence-classification": transformers.SqueezeBertForSequenceClassification,
    "token-classification": transformers.SqueezeBertForTokenClassification,
    "question-answering": transformers.SqueezeBertForQuestionAnswering,
}

UNICODE = "Zoë Saldaña flew from Zürich to Tromsø with Émile, then to 東京 and São Paulo 🙂 — très bien!"
NFD = "Cafe\u0301 owner Jose\u0301 met Bjo\u0308rk in Reykjavi\u0301k."
LONG = (
    "Maria Gonzalez joined the board of Northwind Traders in March 2021. The bridge was designed by an "
    "engineer named Ana Petrović and opened in 1998. Researchers at the University of Helsinki trained the "
    "model on ten thousand hours of speech. Dr. Okafor published the results in the Journal of Applied "
    "Ecology last year, and Tokyo, Lagos and São Paulo are among the largest cities in the world."
)


class Side:
    """Our handler plus an ORT session over the fp32 export, and the matching transformers pipeline."""

    def __init__(self, task: str, entry: Path, checkpoint: Path) -> None:
        manifest = read_manifest(entry)
        self.tokenizer = TextTokenizer.from_file(entry / manifest.tokenizer_file, manifest.max_seq_len)
        info = ModelInfo(manifest.id2label, manifest.problem_type, manifest.max_seq_len)
        self.handler: Any = HANDLERS[task](self.tokenizer, info, Limits())
        self.session = create_session(entry / manifest.graph_file)
        self.layout = manifest.layout
        self.token_level = task != "sequence-classification"
        reference_tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        reference_tokenizer.model_max_length = manifest.max_seq_len
        self.pipeline = transformers.pipeline(  # type: ignore[call-overload]
            PIPELINE_TASKS[task], model=HEADS[task].from_pretrained(checkpoint), tokenizer=reference_tokenizer
        )

    def run_rows(self, prepared: Prepared) -> list[RowOutput]:
        """What the batcher does: the rows as one batch in the graph's layout, one ORT run, split per row."""
        rows = [row.feeds() for row in prepared.rows]
        feeds = make_feeds(self.layout, rows, {"input_ids": self.tokenizer.pad_id})
        outputs = self.session.run(None, feeds)
        lengths = [row.length for row in prepared.rows]
        return split_outputs(self.layout, outputs, lengths, [self.token_level] * len(outputs))

    def ours(self, inputs: Sequence[Any], params: Any) -> list[list[Any]]:
        prepared = self.handler.preprocess(inputs, params)
        results: list[list[Any]] = self.handler.postprocess(prepared, self.run_rows(prepared), params)
        return results


@pytest.fixture(scope="module")
def sides(tmp_path_factory: pytest.TempPathFactory, checkpoints: dict[str, Path]) -> dict[str, Side]:
    store = tmp_path_factory.mktemp("fp32_store")
    made = {}
    for task, checkpoint in checkpoints.items():
        request = ExportRequest(str(checkpoint), task, task, store, precision="fp32", max_seq_len=WINDOW[task])
        made[task] = Side(task, export_model(request, Progress(5, enabled=False)), checkpoint)
    return made


def assert_same(ours: list[dict[str, Any]], reference: list[dict[str, Any]]) -> None:
    assert [{k: v for k, v in r.items() if k != "score"} for r in ours] == [
        {k: v for k, v in r.items() if k != "score"} for r in reference
    ]
    for mine, theirs in zip(ours, reference):
        assert mine["score"] == pytest.approx(float(theirs["score"]), abs=SCORE_TOLERANCE)


def as_dict(result: Any, keys: Sequence[str]) -> dict[str, Any]:
    return {k: getattr(result, k) for k in keys if getattr(result, k) is not None or k in ("start", "end")}


# ---- sequence classification -----------------------------------------------------------------

CLASSIFY_INPUTS = [
    TextInput("The movie was great, I loved every minute of it!"),
    TextInput("Terrible service, never again."),
    TextInput(UNICODE),
    TextInput(NFD),
    TextInput("Is the museum open on Sundays?", "Yes, from ten until six, except in December."),
    TextInput("東京 🙂", "ünïcödé ø"),
]
LONG_CLASSIFY = [
    TextInput(LONG),
    TextInput(LONG, "And a second sentence that also takes tokens."),
    TextInput("x", LONG),
]


@pytest.mark.parametrize("top_k", [1, 2, None])
@pytest.mark.parametrize("function", [None, "softmax", "sigmoid", "none"])
def test_sequence_classification_matches_pipeline(
    sides: dict[str, Side], top_k: int | None, function: str | None
) -> None:
    side = sides["sequence-classification"]
    params = ClassifyParams(top_k=top_k, function_to_apply=function)
    ours = side.ours(CLASSIFY_INPUTS, params)
    kwargs: dict[str, Any] = {"top_k": top_k} | ({"function_to_apply": function} if function else {})
    for item, mine in zip(CLASSIFY_INPUTS, ours):
        query = item.text if item.text_pair is None else {"text": item.text, "text_pair": item.text_pair}
        reference = side.pipeline(query, **kwargs)
        assert_same([as_dict(r, ("label", "score")) for r in mine], reference)


def test_sequence_classification_truncation_matches_pipeline(sides: dict[str, Side]) -> None:
    side = sides["sequence-classification"]
    ours = side.ours(LONG_CLASSIFY, ClassifyParams(top_k=None, truncation=True))
    for item, mine in zip(LONG_CLASSIFY, ours):
        query = item.text if item.text_pair is None else {"text": item.text, "text_pair": item.text_pair}
        reference = side.pipeline(query, top_k=None, truncation=True)
        assert_same([as_dict(r, ("label", "score")) for r in mine], reference)


# ---- token classification --------------------------------------------------------------------

NER_TEXTS = [
    "Maria Gonzalez joined the board of Northwind Traders in March 2021.",
    "Microsoft and Quixotically-named Zyxwvut Incorporated hired Okafor.",
    UNICODE,
    NFD,
    "   leading spaces,   tabs\tand\nnewlines   ",
]
STRATEGIES = ["none", "simple", "first", "average", "max"]
ENTITY_KEYS = ("entity", "entity_group", "score", "index", "word", "start", "end")


def entity_dicts(entities: Sequence[Any]) -> list[dict[str, Any]]:
    return [as_dict(e, ENTITY_KEYS) for e in entities]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("ignore", [("O",), (), ("O", "B-PER", "I-ORG", "MISC")])
def test_token_classification_matches_pipeline(sides: dict[str, Side], strategy: str, ignore: tuple[str, ...]) -> None:
    side = sides["token-classification"]
    inputs = [TextInput(t) for t in NER_TEXTS]
    ours = side.ours(inputs, TokenClassifyParams(aggregation_strategy=strategy, ignore_labels=ignore))
    for text, mine in zip(NER_TEXTS, ours):
        reference = side.pipeline(text, aggregation_strategy=strategy, ignore_labels=list(ignore))
        assert_same(entity_dicts(mine), reference)


def test_token_classification_splits_words_into_subwords(sides: dict[str, Side]) -> None:
    side = sides["token-classification"]
    encoded = side.tokenizer.encode(NER_TEXTS[1])
    assert any(token.startswith("##") for token in encoded.tokens)  # the cases above do cover subwords
    assert "[UNK]" in side.tokenizer.encode(UNICODE).tokens


@pytest.mark.parametrize("strategy", ["simple", "first", "average", "max"])
@pytest.mark.parametrize("stride", [0, 5, 20])
def test_token_classification_stride_windows_match_pipeline(sides: dict[str, Side], strategy: str, stride: int) -> None:
    side = sides["token-classification"]
    params = TokenClassifyParams(aggregation_strategy=strategy, stride=stride, ignore_labels=())
    prepared = side.handler.preprocess([TextInput(LONG)], params)
    assert len(prepared.rows) >= 3
    ours = side.ours([TextInput(LONG), TextInput(UNICODE)], params)
    for text, mine in zip([LONG, UNICODE], ours):
        reference = side.pipeline(text, aggregation_strategy=strategy, stride=stride, ignore_labels=[])
        assert_same(entity_dicts(mine), reference)


@pytest.mark.parametrize("strategy", ["none", "first"])
def test_token_classification_truncation_matches_pipeline(sides: dict[str, Side], strategy: str) -> None:
    side = sides["token-classification"]
    ours = side.ours([TextInput(LONG)], TokenClassifyParams(aggregation_strategy=strategy, truncation=True))
    assert_same(entity_dicts(ours[0]), side.pipeline(LONG, aggregation_strategy=strategy))


# ---- question answering ----------------------------------------------------------------------

QA_CASES = [
    ("Who designed the bridge?", "The bridge was designed by an engineer named Ana Petrović and opened in 1998."),
    ("Where did Zoë fly?", UNICODE),
    ("Who met Björk?", NFD),
    ("Where is the board?", LONG),
    ("Who?", "Ana Petrović."),  # fewer candidate spans than asked for: zero-score spans and the null answer
]
QA_PARAMS = [
    {},
    {"top_k": 3},
    {"top_k": 5, "max_seq_len": 40, "doc_stride": 10},
    {"top_k": 2, "max_seq_len": 48, "doc_stride": 16, "handle_impossible_answer": True},
    {"top_k": 1, "max_seq_len": 40, "doc_stride": 12, "handle_impossible_answer": True},
    {"top_k": 4, "max_answer_len": 3},
    {"top_k": 3, "max_answer_len": 1, "max_seq_len": 40, "doc_stride": 8},
    {"top_k": 3, "align_to_words": False},
    {"top_k": 8, "handle_impossible_answer": True},
    {"top_k": 20, "max_seq_len": 36, "doc_stride": 20, "align_to_words": False, "handle_impossible_answer": True},
]


@pytest.mark.parametrize("kwargs", QA_PARAMS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "defaults")
def test_question_answering_matches_pipeline(sides: dict[str, Side], kwargs: dict[str, Any]) -> None:
    side = sides["question-answering"]
    inputs = [QAInput(q, c) for q, c in QA_CASES]
    ours = side.ours(inputs, AnswerParams(**kwargs))
    for (question, context), mine in zip(QA_CASES, ours):
        reference = side.pipeline(question=question, context=context, **kwargs)
        reference = reference if isinstance(reference, list) else [reference]
        assert_same([as_dict(a, ("answer", "score", "start", "end")) for a in mine], reference)
        assert all(a.answer == context[a.start : a.end] for a in mine)


def test_question_answering_uses_several_windows(sides: dict[str, Side]) -> None:
    side = sides["question-answering"]
    prepared = side.handler.preprocess(
        [QAInput("Where is the board?", LONG)], AnswerParams(max_seq_len=40, doc_stride=10)
    )
    assert len(prepared.rows) >= 3 and all(row.length <= 40 for row in prepared.rows)


# ---- the served int8 graphs: same structure, scores close ------------------------------------

INT8_SCORE_TOLERANCE = 0.05


@pytest.fixture(scope="module")
def int8_sides(store: Path, checkpoints: dict[str, Path]) -> dict[str, Side]:
    return {task: Side(task, store / task, checkpoints[task]) for task in HANDLERS}


def test_int8_classification_agrees_loosely(int8_sides: dict[str, Side], sides: dict[str, Side]) -> None:
    """int8 moves logits a little: every label is still there with a close score (the order may flip)."""
    task, params = "sequence-classification", ClassifyParams(top_k=None)
    for served, exact in zip(int8_sides[task].ours(CLASSIFY_INPUTS, params), sides[task].ours(CLASSIFY_INPUTS, params)):
        served_scores, exact_scores = ({r.label: r.score for r in results} for results in (served, exact))
        assert served_scores.keys() == exact_scores.keys()
        for label, score in exact_scores.items():
            assert served_scores[label] == pytest.approx(score, abs=INT8_SCORE_TOLERANCE)


def test_int8_token_classification_and_qa_keep_their_spans(int8_sides: dict[str, Side], sides: dict[str, Side]) -> None:
    task, params = "token-classification", TokenClassifyParams(ignore_labels=())
    inputs = [TextInput(t) for t in NER_TEXTS]
    for served, exact in zip(int8_sides[task].ours(inputs, params), sides[task].ours(inputs, params)):
        assert [(e.index, e.word, e.start, e.end) for e in served] == [(e.index, e.word, e.start, e.end) for e in exact]
    answers = int8_sides["question-answering"].ours([QAInput(q, c) for q, c in QA_CASES], AnswerParams(top_k=3))
    for (_, context), found in zip(QA_CASES, answers):
        assert found and all(a.answer == context[a.start : a.end] for a in found)
