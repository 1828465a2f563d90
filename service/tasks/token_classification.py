"""TokenClassificationHandler: texts -> tagged tokens or entity groups (token-classification pipeline)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service.batching.rows import RowOutput
from service.errors import InvalidInput, RuntimeFailure
from service.tasks.base import Entity, Limits, ModelInfo, Prepared, TextInput, TokenClassifyParams
from service.tasks.checks import check_choice, check_count, check_fits, check_int, check_text
from service.tasks.entities import STRATEGIES, PreEntity, aggregate, merge_overlapping
from service.tasks.scores import softmax
from service.tokenization import EncodedText, TextTokenizer


@dataclass(frozen=True)
class _Context:
    texts: list[str]  # per input
    windows: list[EncodedText]  # per row


@dataclass(frozen=True)
class _Resolved:
    strategy: str
    ignore_labels: frozenset[str]
    stride: int | None


class TokenClassificationHandler:
    def __init__(self, tokenizer: TextTokenizer, info: ModelInfo, limits: Limits) -> None:
        self.tokenizer = tokenizer
        self.info = info
        self.limits = limits

    def _resolve(self, params: TokenClassifyParams) -> _Resolved:
        strategy = check_choice(params.aggregation_strategy, "aggregation_strategy", STRATEGIES)
        if isinstance(params.ignore_labels, str) or not all(isinstance(x, str) for x in params.ignore_labels):
            raise InvalidInput("ignore_labels must be a list of label names")
        stride = params.stride
        if stride is not None:
            limit = self.info.max_seq_len
            stride = check_int(stride, "stride", 0)
            if stride >= limit:
                raise InvalidInput(f"stride ({stride}) must be less than the model's max_seq_len ({limit})")
            if strategy == "none":
                raise InvalidInput(
                    "stride needs an aggregation_strategy other than none (windows are merged by entity span)"
                )
        return _Resolved(strategy, frozenset(params.ignore_labels), stride)

    def preprocess(self, inputs: Sequence[TextInput], params: TokenClassifyParams) -> Prepared:
        check_count(inputs, self.limits)
        resolved = self._resolve(params)
        texts = [check_text(item.text, f"inputs[{i}].text", self.limits) for i, item in enumerate(inputs)]
        windows: list[EncodedText] = []
        owners: list[int] = []
        for i, text in enumerate(texts):
            encoded = self._encode(text, i, resolved.stride, params.truncation)
            windows.extend(encoded)
            owners.extend([i] * len(encoded))
        return Prepared(rows=[w.row() for w in windows], row_owner=owners, context=_Context(texts, windows))

    def _encode(self, text: str, index: int, stride: int | None, truncation: bool) -> list[EncodedText]:
        limit = self.info.max_seq_len
        if stride is not None:
            return self.tokenizer.encode_windows(text, limit, stride)
        if truncation:
            return [self.tokenizer.encode_truncated(text, None, limit)]
        encoded = self.tokenizer.encode(text)
        check_fits(encoded.length, limit, f"inputs[{index}]", "set a stride to cover it in windows, or truncation")
        return [encoded]

    def postprocess(
        self, prepared: Prepared, outputs: Sequence[RowOutput], params: TokenClassifyParams
    ) -> list[list[Entity]]:
        resolved = self._resolve(params)
        context: _Context = prepared.context
        found: list[list[Entity]] = [[] for _ in context.texts]
        windows_seen = [0] * len(context.texts)
        for row, owner in enumerate(prepared.row_owner):
            window = context.windows[row]
            logits = np.asarray(outputs[row][0], dtype=np.float32)
            if logits.shape != (window.length, len(self.info.id2label)):
                raise RuntimeFailure(f"token logits of shape {logits.shape} for a row of {window.length} tokens")
            pre = self._pre_entities(context.texts[owner], window, softmax(logits))
            entities = aggregate(pre, resolved.strategy, self.info.id2label, self.tokenizer.tokens_to_string)
            found[owner].extend(
                e
                for e in entities
                if e.entity not in resolved.ignore_labels and e.entity_group not in resolved.ignore_labels
            )
            windows_seen[owner] += 1
        return [merge_overlapping(e) if n > 1 else e for e, n in zip(found, windows_seen)]

    def _pre_entities(self, text: str, window: EncodedText, scores: np.ndarray) -> list[PreEntity]:
        """Non-special tokens with their probabilities and whether each continues the previous word."""
        pre = []
        for index, token in enumerate(window.tokens):
            if window.special_tokens_mask[index]:
                continue
            start, end = window.offsets[index]
            original = text[start:end]
            if int(window.ids[index]) == self.tokenizer.unk_id:
                word, is_subword = original, False
            else:
                word, is_subword = token, self._is_subword(token, original, text, start)
            pre.append(PreEntity(word, scores[index], start, end, index, is_subword))
        return pre

    def _is_subword(self, token: str, original: str, text: str, start: int) -> bool:
        if self.tokenizer.subword_prefix:
            # A '##piece' is longer than the text it covers; a word-initial token is not.
            return len(token) != len(original)
        # The pipeline's fallback for tokenizers without a subword prefix: glued to what precedes it.
        return start > 0 and " " not in text[start - 1 : start + 1]
