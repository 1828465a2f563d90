"""SequenceClassificationHandler: texts and text pairs -> sorted label scores (text-classification pipeline)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from service.batching.rows import RowOutput
from service.errors import RuntimeFailure
from service.tasks.base import ClassifyParams, LabelScore, Limits, ModelInfo, Prepared, TextInput
from service.tasks.checks import check_choice, check_count, check_fits, check_int, check_text
from service.tasks.scores import sigmoid, softmax
from service.tokenization import TextTokenizer

FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "softmax": softmax,
    "sigmoid": sigmoid,
    "none": lambda logits: logits,
}


@dataclass(frozen=True)
class _Resolved:
    top_k: int | None
    function: str


class SequenceClassificationHandler:
    def __init__(self, tokenizer: TextTokenizer, info: ModelInfo, limits: Limits) -> None:
        self.tokenizer = tokenizer
        self.info = info
        self.limits = limits

    def default_function(self) -> str:
        """The pipeline's resolution order when function_to_apply is not given."""
        problem, num_labels = self.info.problem_type, len(self.info.id2label)
        if problem == "regression":
            return "none"
        if problem == "multi_label_classification" or num_labels == 1:
            return "sigmoid"
        if problem == "single_label_classification" or num_labels > 1:
            return "softmax"
        configured = self.info.extra.get("function_to_apply")
        return check_choice(configured, "function_to_apply", tuple(FUNCTIONS)) if configured else "none"

    def _resolve(self, params: ClassifyParams) -> _Resolved:
        top_k = None if params.top_k is None else check_int(params.top_k, "top_k", 1)
        if params.function_to_apply is None:
            return _Resolved(top_k, self.default_function())
        return _Resolved(top_k, check_choice(params.function_to_apply, "function_to_apply", tuple(FUNCTIONS)))

    def preprocess(self, inputs: Sequence[TextInput], params: ClassifyParams) -> Prepared:
        check_count(inputs, self.limits)
        resolved = self._resolve(params)  # checked before tokenizing; postprocess reuses it
        # Every text is checked before any is tokenized: a bad request costs no tokenizer time.
        texts = [
            (
                check_text(item.text, f"inputs[{i}].text", self.limits),
                None if item.text_pair is None else check_text(item.text_pair, f"inputs[{i}].text_pair", self.limits),
            )
            for i, item in enumerate(inputs)
        ]
        limit = self.info.max_seq_len
        rows = []
        for i, (text, pair) in enumerate(texts):
            row = self.tokenizer.encode_row(text, pair, limit if params.truncation else None)
            if not params.truncation:
                check_fits(row.length, limit, f"inputs[{i}]", "shorten it or set truncation to true")
            rows.append(row)
        return Prepared(rows=rows, row_owner=list(range(len(rows))), context=resolved)

    def postprocess(
        self, prepared: Prepared, outputs: Sequence[RowOutput], params: ClassifyParams
    ) -> list[list[LabelScore]]:
        resolved = prepared.context if isinstance(prepared.context, _Resolved) else self._resolve(params)
        results: list[list[LabelScore]] = [[] for _ in prepared.row_owner]
        for row, owner in enumerate(prepared.row_owner):
            logits = np.asarray(outputs[row][0], dtype=np.float32).reshape(-1)
            results[owner] = self._labels(FUNCTIONS[resolved.function](logits), resolved.top_k)
        return results

    def _labels(self, scores: np.ndarray, top_k: int | None) -> list[LabelScore]:
        if scores.shape[0] != len(self.info.id2label):
            raise RuntimeFailure(f"the model returned {scores.shape[0]} scores for {len(self.info.id2label)} labels")
        labels = [LabelScore(self._label(i), score) for i, score in enumerate(scores.tolist())]
        # Stable sort: equal scores keep label order, as the pipeline's list.sort(reverse=True) does.
        labels.sort(key=lambda label: label.score, reverse=True)
        return labels if top_k is None else labels[:top_k]

    def _label(self, index: int) -> str:
        return self.info.id2label.get(index, f"LABEL_{index}")
