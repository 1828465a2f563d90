"""TextTokenizer: the model's tokenizer.json, encoding texts, pairs and stride windows like HF fast tokenizers.

Truncation and windows are produced exactly the way transformers' fast tokenizers produce them:
`enable_truncation(max_length, stride, strategy)` on the backend tokenizer, then the first encoding
followed by its `overflowing` encodings. Padding is always off (the batcher pads).

Thread safety: a `tokenizers.Tokenizer` keeps its truncation settings as mutable state, so one
shared instance cannot be reconfigured per call while other threads encode with it. Instead each
distinct truncation setting gets its own copy, configured once under a lock before it is shared and
never mutated afterwards; encoding only reads it. The copies live in a small LRU cache.

ASCII shortcut: BERT's normalizer (`BertNormalizer`: drop control characters, whitespace to
spaces, pad CJK characters, strip accents, lowercase) is a quarter of a short text's encoding
time, yet on ASCII text without control characters all it does is lowercase. Such texts are
encoded by a copy of the tokenizer whose normalizer is just `Lowercase` (or none): same tokens,
ids and offsets, ~45 us less per 128-token text. Any other text, or any other normalizer, takes
the tokenizer as it is. tests/test_tokenization.py holds the two paths equal on adversarial text.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Encoding, Tokenizer

from service.batching.rows import EncodedRow
from service.errors import InvalidInput
from service.wordpiece import ASCII_CONTROLS, FastWordPiece

_CACHED_SETTINGS = 8


class EncodedText:
    """One encoded sequence (a text, a pair, or one window of either), unpadded.

    The model row's arrays are made at once; the rest (offsets, tokens, word and sequence ids:
    what token classification and QA read, sequence classification never) is read from the
    backend's encoding on first use. Building them eagerly cost a lone 128-token request tens of
    microseconds in series with its run.
    """

    def __init__(self, encoding: Encoding) -> None:
        self.encoding = encoding
        self.ids = np.asarray(encoding.ids, dtype=np.int64)  # int64 [n]
        self.type_ids = np.asarray(encoding.type_ids, dtype=np.int64)  # int64 [n]
        self.attention_mask = np.asarray(encoding.attention_mask, dtype=np.int64)  # int64 [n]

    @cached_property
    def special_tokens_mask(self) -> np.ndarray:  # int64 [n], 1 for [CLS]/[SEP]/...
        return np.asarray(self.encoding.special_tokens_mask, dtype=np.int64)

    @cached_property
    def offsets(self) -> tuple[tuple[int, int], ...]:  # character spans each token came from
        return tuple((int(a), int(b)) for a, b in self.encoding.offsets)

    @cached_property
    def tokens(self) -> tuple[str, ...]:
        return tuple(self.encoding.tokens)

    @cached_property
    def word_ids(self) -> tuple[int | None, ...]:
        return tuple(self.encoding.word_ids)

    @cached_property
    def sequence_ids(self) -> tuple[int | None, ...]:
        return tuple(self.encoding.sequence_ids)

    @property
    def length(self) -> int:
        return len(self.ids)

    def row(self) -> EncodedRow:
        return EncodedRow(self.ids, self.attention_mask, self.type_ids)

    def word_chars(self, token: int, sequence: int) -> tuple[int, int] | None:
        """Character span of the whole word holding `token` (within this window), None for specials."""
        word = self.encoding.token_to_word(token)
        if word is None:
            return None
        span = self.encoding.word_to_chars(word, sequence_index=sequence)
        return None if span is None else (int(span[0]), int(span[1]))


@dataclass(frozen=True)
class _Truncation:
    max_length: int
    stride: int
    strategy: str  # "longest_first" | "only_second"


class TextTokenizer:
    """Read-only after construction; every method may be called from several threads at once."""

    def __init__(self, tokenizer: Tokenizer, max_seq_len: int) -> None:
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._plain = tokenizer
        self._json = tokenizer.to_str()
        config = json.loads(self._json)  # once: a base vocabulary's JSON takes milliseconds to parse
        self._ascii_json = _ascii_equivalent(config)
        self._ascii = Tokenizer.from_str(self._ascii_json) if self._ascii_json is not None else tokenizer
        self._wordpiece = FastWordPiece.from_config(config)
        self._configured: OrderedDict[tuple[_Truncation, bool], Tokenizer] = OrderedDict()
        self._lock = threading.Lock()
        model = tokenizer.model
        self.subword_prefix: str | None = getattr(model, "continuing_subword_prefix", None) or None
        unk = getattr(model, "unk_token", None)
        self.unk_id: int | None = tokenizer.token_to_id(unk) if unk else None
        self.cls_id: int | None = tokenizer.token_to_id("[CLS]")
        pad = tokenizer.token_to_id("[PAD]")
        self.pad_id: int = pad if pad is not None else 0
        self.special_tokens_single = tokenizer.num_special_tokens_to_add(is_pair=False)
        self.special_tokens_pair = tokenizer.num_special_tokens_to_add(is_pair=True)
        # The copies truncating to the model's length (what classification and NER use) are built
        # now: a copy costs ~0.65 ms (the tokenizer parsed again), too much for a first request.
        for shortcut in {False, self._ascii_json is not None}:
            self._with(_Truncation(max_seq_len, 0, "longest_first"), shortcut)

    @classmethod
    def from_file(cls, path: str | Path, max_seq_len: int) -> TextTokenizer:
        return cls(Tokenizer.from_file(str(path)), max_seq_len)

    # ---- encoding -------------------------------------------------------------------------

    def encode(self, text: str, pair: str | None = None) -> EncodedText:
        """The whole text (or pair) with special tokens, no truncation."""
        return EncodedText(self._backend(text, pair).encode(text, pair))

    def encode_truncated(self, text: str, pair: str | None, max_length: int) -> EncodedText:
        """Like HF `truncation=True`: longest_first down to max_length tokens, overflow dropped."""
        truncation = _Truncation(max_length, 0, "longest_first")
        return EncodedText(self._with(truncation, self.ascii_shortcut(text, pair)).encode(text, pair))

    def encode_row(self, text: str, pair: str | None, max_length: int | None) -> EncodedRow:
        """The model row alone, what sequence classification needs: like encode_truncated(...).row(),
        or encode(...).row() when max_length is None. A text (or pair) a BERT tokenizer's WordPiece
        reproduces exactly takes it (service/wordpiece.py); anything else, the backend."""
        if self._wordpiece is not None:
            row = self._wordpiece.encode(text, max_length, pair)
            if row is not None:
                return row
        encoded = self.encode(text, pair) if max_length is None else self.encode_truncated(text, pair, max_length)
        return encoded.row()

    @property
    def python_wordpiece(self) -> bool:
        """True when encode_row can take service/wordpiece.py."""
        return self._wordpiece is not None

    def encode_windows(self, text: str, max_length: int, stride: int) -> list[EncodedText]:
        """Windows of at most max_length tokens, consecutive windows sharing `stride` tokens."""
        room = max_length - self.special_tokens_single
        if stride >= room:
            # The backend would panic if it had to cut; accept the text only if no cut is needed.
            whole = self.encode(text)
            if whole.length <= max_length:
                return [whole]
            raise InvalidInput(
                f"stride {stride} leaves no room to advance: windows of {max_length} tokens hold {room} text "
                f"tokens, so stride must be below {room}"
            )
        return self._windows(text, None, _Truncation(max_length, stride, "longest_first"))

    def encode_pair_windows(self, first: str, second: str, max_length: int, stride: int) -> list[EncodedText]:
        """QA windows: `first` whole in every window, `second` cut into overlapping pieces (only_second)."""
        question = self._backend(first, None).encode(first, add_special_tokens=False)
        room = max_length - self.special_tokens_pair - len(question)
        if stride >= room:
            whole = self.encode(first, second)
            if whole.length <= max_length:
                return [whole]
            if room <= 0:
                raise InvalidInput(
                    f"the question is too long: it leaves no room for the context in windows of {max_length} tokens"
                )
            raise InvalidInput(
                f"doc_stride {stride} is too large: with this question each window of {max_length} tokens holds "
                f"{room} context tokens, so doc_stride must be below {room}"
            )
        return self._windows(first, second, _Truncation(max_length, stride, "only_second"))

    def _windows(self, text: str, pair: str | None, truncation: _Truncation) -> list[EncodedText]:
        encoding = self._with(truncation, self.ascii_shortcut(text, pair)).encode(text, pair)
        return [EncodedText(e) for e in [encoding, *encoding.overflowing]]

    def ascii_shortcut(self, text: str, pair: str | None) -> bool:
        """True when the ASCII shortcut encodes this text (and pair) exactly like the tokenizer."""
        if self._ascii_json is None:
            return False
        return all(t.isascii() and ASCII_CONTROLS.search(t) is None for t in (text, pair) if t is not None)

    def _backend(self, text: str, pair: str | None) -> Tokenizer:
        return self._ascii if self.ascii_shortcut(text, pair) else self._plain

    def _with(self, truncation: _Truncation, shortcut: bool) -> Tokenizer:
        key = (truncation, shortcut)
        with self._lock:
            tokenizer = self._configured.get(key)
            if tokenizer is not None:
                self._configured.move_to_end(key)
                return tokenizer
            source = self._ascii_json if shortcut and self._ascii_json is not None else self._json
            tokenizer = Tokenizer.from_str(source)
            tokenizer.enable_truncation(truncation.max_length, stride=truncation.stride, strategy=truncation.strategy)
            self._configured[key] = tokenizer
            if len(self._configured) > _CACHED_SETTINGS:
                self._configured.popitem(last=False)
            return tokenizer

    # ---- back to text ---------------------------------------------------------------------

    def tokens_to_string(self, tokens: list[str]) -> str:
        """transformers' convert_tokens_to_string: the backend decoder (joins '##' pieces, cleans up)."""
        decoder = self._plain.decoder
        return str(decoder.decode(tokens)) if decoder is not None else " ".join(tokens)

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return str(self._plain.decode(ids, skip_special_tokens=skip_special_tokens))

    def id_to_token(self, token_id: int) -> str | None:
        token = self._plain.id_to_token(token_id)
        return None if token is None else str(token)


def _ascii_equivalent(config: dict[str, Any]) -> str | None:
    """The tokenizer's JSON with BertNormalizer replaced by what it does to clean ASCII text.

    None when the normalizer is anything else, or when an added token matched on normalized text
    holds whitespace (BertNormalizer turns tabs and newlines into spaces; Lowercase does not) or
    anything but ASCII (BertNormalizer strips its accents: "Café" matches "cafe"; Lowercase does not).
    """
    normalizer = config.get("normalizer")
    if not isinstance(normalizer, dict) or normalizer.get("type") != "BertNormalizer":
        return None
    for token in config.get("added_tokens") or ():
        content = token.get("content", "")
        if token.get("normalized") and (not content.isascii() or any(c.isspace() for c in content)):
            return None
    return json.dumps({**config, "normalizer": {"type": "Lowercase"} if normalizer.get("lowercase") else None})
