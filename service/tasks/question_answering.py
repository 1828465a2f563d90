"""QuestionAnsweringHandler: (question, context) -> answers with character spans (question-answering pipeline).

Every context window is its own row; spans are scored per window, mapped back to characters of the
original context, merged across windows by answer text, and ranked, as transformers 4.57 does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service.batching.rows import RowOutput
from service.errors import InvalidInput, RuntimeFailure
from service.tasks.base import Answer, AnswerParams, Limits, ModelInfo, Prepared, QAInput
from service.tasks.checks import check_count, check_int, check_text
from service.tasks.spans import NO_NULL_SCORE, answer_mask, select_spans
from service.tokenization import EncodedText, TextTokenizer

DEFAULT_MAX_SEQ_LEN = 384
DEFAULT_MAX_DOC_STRIDE = 128


@dataclass(frozen=True)
class _Context:
    contexts: list[str]  # per input
    windows: list[EncodedText]  # per row
    p_masks: list[np.ndarray]  # per row: 1 where a token cannot be part of an answer


@dataclass(frozen=True)
class _Resolved:
    top_k: int
    max_answer_len: int
    max_seq_len: int
    doc_stride: int


class _Ranking:
    """One input's answers in first-seen order; the same text (case-insensitively) adds up its scores."""

    def __init__(self) -> None:
        self.answers: list[Answer] = []
        self._index: dict[str, int] = {}
        self.null_score = NO_NULL_SCORE

    def add(self, answer: Answer) -> None:
        key = answer.answer.lower()
        if key in self._index:
            first = self.answers[self._index[key]]
            self.answers[self._index[key]] = Answer(first.answer, first.score + answer.score, first.start, first.end)
        else:
            self._index[key] = len(self.answers)
            self.answers.append(answer)

    def best(self, top_k: int, with_null: bool) -> list[Answer]:
        answers = self.answers + ([Answer("", self.null_score, 0, 0)] if with_null else [])
        return sorted(answers, key=lambda a: a.score, reverse=True)[:top_k]


class QuestionAnsweringHandler:
    def __init__(self, tokenizer: TextTokenizer, info: ModelInfo, limits: Limits) -> None:
        self.tokenizer = tokenizer
        self.info = info
        self.limits = limits

    def _resolve(self, params: AnswerParams) -> _Resolved:
        top_k = check_int(params.top_k, "top_k", 1)
        max_answer_len = check_int(params.max_answer_len, "max_answer_len", 1)
        check_int(params.max_question_len, "max_question_len", 1)  # only the slow-tokenizer path uses it
        if params.max_seq_len is None:
            max_seq_len = min(self.info.max_seq_len, DEFAULT_MAX_SEQ_LEN)
        else:
            max_seq_len = check_int(
                params.max_seq_len, "max_seq_len", self.tokenizer.special_tokens_pair + 1, self.info.max_seq_len
            )
        if params.doc_stride is None:
            doc_stride = min(max_seq_len // 2, DEFAULT_MAX_DOC_STRIDE)
        else:
            doc_stride = check_int(params.doc_stride, "doc_stride", 0)
            if doc_stride > max_seq_len:
                raise InvalidInput(f"doc_stride ({doc_stride}) is larger than max_seq_len ({max_seq_len})")
        return _Resolved(top_k, max_answer_len, max_seq_len, doc_stride)

    def preprocess(self, inputs: Sequence[QAInput], params: AnswerParams) -> Prepared:
        check_count(inputs, self.limits)
        resolved = self._resolve(params)
        # Every text is checked before any is tokenized: a bad request costs no tokenizer time.
        pairs = [
            (
                check_text(item.question, f"inputs[{i}].question", self.limits),
                check_text(item.context, f"inputs[{i}].context", self.limits),
            )
            for i, item in enumerate(inputs)
        ]
        windows: list[EncodedText] = []
        owners: list[int] = []
        for i, (question, context) in enumerate(pairs):
            pieces = self.tokenizer.encode_pair_windows(question, context, resolved.max_seq_len, resolved.doc_stride)
            windows.extend(pieces)
            owners.extend([i] * len(pieces))
        p_masks = [self._p_mask(window) for window in windows]
        contexts = [context for _, context in pairs]
        return Prepared([w.row() for w in windows], owners, _Context(contexts, windows, p_masks))

    def _p_mask(self, window: EncodedText) -> np.ndarray:
        """Only context tokens can be in an answer, plus [CLS], kept for the "no answer" span."""
        p_mask = np.array([sequence != 1 for sequence in window.sequence_ids], dtype=bool)
        if self.tokenizer.cls_id is not None:
            p_mask[window.ids == self.tokenizer.cls_id] = False
        return p_mask

    def postprocess(self, prepared: Prepared, outputs: Sequence[RowOutput], params: AnswerParams) -> list[list[Answer]]:
        resolved = self._resolve(params)
        context: _Context = prepared.context
        rankings = [_Ranking() for _ in context.contexts]
        # More candidates than asked for when aligning: several spans can map to the same words.
        pre_top_k = resolved.top_k * 2 + 10 if params.align_to_words else resolved.top_k
        for row, owner in enumerate(prepared.row_owner):
            window, text = context.windows[row], context.contexts[owner]
            start_logits, end_logits = (np.asarray(x, dtype=np.float32).reshape(-1) for x in outputs[row][:2])
            if start_logits.shape[0] != window.length or end_logits.shape[0] != window.length:
                raise RuntimeFailure(f"span logits of shapes {start_logits.shape} for a row of {window.length} tokens")
            allowed = answer_mask(context.p_masks[row], window.attention_mask)
            spans = select_spans(start_logits, end_logits, allowed, pre_top_k, resolved.max_answer_len)
            if params.handle_impossible_answer:
                rankings[owner].null_score = min(rankings[owner].null_score, spans.null_score)
            for s, e, score in zip(spans.starts, spans.ends, spans.scores):
                start, end = self._chars(window, int(s), int(e), params.align_to_words)
                rankings[owner].add(Answer(text[start:end], score.item(), start, end))
        return [ranking.best(resolved.top_k, params.handle_impossible_answer) for ranking in rankings]

    @staticmethod
    def _chars(window: EncodedText, start: int, end: int, align_to_words: bool) -> tuple[int, int]:
        """Character span of tokens start..end; widened to whole words when aligning (if both have one)."""
        if align_to_words:
            first, last = window.word_chars(start, 1), window.word_chars(end, 1)
            if first is not None and last is not None:
                return first[0], last[1]
        return window.offsets[start][0], window.offsets[end][1]
