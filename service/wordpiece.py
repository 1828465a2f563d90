"""WordPiece in Python where it is exact: a BERT tokenizer's ids for one text or a pair of texts.

Why: `tokenizers` builds a normalized string with per-byte alignments for the text and for every
word its pre-tokenizer splits off, so a 128-token English text costs ~110 us warm, and ~300 us
right after a model run has pushed its tables out of the CPU caches: a third of what serving adds
around a lone caller's run. Sequence classification needs only the ids (no offsets, no word ids),
and for a BERT tokenizer (BertNormalizer, BertPreTokenizer, WordPiece, BERT's template) on text
that normalizes to ASCII those take one regex and a dict lookup per word: ~33 us warm, ~130-190 us
with cold caches (loadtest.cold_steps).

Exactness, step by step, for text this module accepts (anything else returns None and goes to the
backend tokenizer):
- BertNormalizer: accepted text holds no control character (clean_text would drop it) and no CJK
  character (handle_chinese_chars); accents are stripped as BertNormalizer does (NFD, then the
  nonspacing marks dropped) when its settings strip them, then it is lowercased if they lowercase.
  What remains must be ASCII, or the text goes to the backend.
- BertPreTokenizer on ASCII: words are runs of letters and digits; every other printable character
  is ASCII punctuation and a word of its own; whitespace separates.
- WordPiece: the backend's greedy longest-match-first, a word longer than max_input_chars_per_word
  or with no match is the unknown token.
- Added tokens (special tokens included) are matched by the backend before normalizing: a text
  (or pair) holding one, in any case, before or after normalizing, goes to the backend.
- The post-processor's template for one text or a pair (TemplateProcessing or BertProcessing)
  adds the special tokens and type ids. Truncation is the backend's longest_first: one text keeps
  its first tokens; of a pair, only the longer is cut if that is enough, else each gets half the
  room (the longer one, or on a tie the pair's text, the odd token).
tests/test_wordpiece.py holds it equal to the backend on adversarial text and other BERT configs.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from service.batching.rows import EncodedRow

# ASCII characters BertNormalizer's clean_text would drop (tab, newline, return are whitespace):
# they would shift offsets (tokenization's ASCII shortcut) and vanish from the words (here).
ASCII_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_WORDS = re.compile(r"[A-Za-z0-9]+|[^\sA-Za-z0-9]")
_DIACRITICS = re.compile("[\u0300-\u036f]")  # Unicode's Combining Diacritical Marks: all nonspacing


class FastWordPiece:
    """One tokenizer's vocabulary and template; read-only, safe from any thread."""

    def __init__(
        self,
        vocab: dict[str, int],
        prefix: str,
        unk_id: int,
        max_word_chars: int,
        lowercase: bool,
        strip_accents: bool,
        single: Template,
        pair: Template | None,
        added: re.Pattern[str] | None,
    ) -> None:
        self._vocab = vocab
        # Continuing pieces keyed without their prefix: one lookup per candidate, no string built.
        self._continuing = {token[len(prefix) :]: i for token, i in vocab.items() if token.startswith(prefix)}
        self._unk = unk_id
        self._max_word_chars = max_word_chars
        self._lowercase = lowercase
        self._strip_accents = strip_accents
        self._added = added
        self._single = single
        self._pair = pair

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FastWordPiece | None:
        """From a tokenizer.json's content; None unless it is a BERT tokenizer this module reproduces."""
        model, normalizer = config.get("model") or {}, config.get("normalizer") or {}
        if model.get("type") != "WordPiece" or normalizer.get("type") != "BertNormalizer":
            return None
        if (config.get("pre_tokenizer") or {}).get("type") != "BertPreTokenizer":
            return None
        vocab = model.get("vocab")
        if not isinstance(vocab, dict):
            return None
        unk_id = vocab.get(model.get("unk_token"))
        single = _template(config.get("post_processor"), "single")
        if unk_id is None or single is None:
            return None
        contents = [t["content"] for t in config.get("added_tokens") or () if t.get("content")]
        if any(c.isspace() for content in contents for c in content):
            return None  # the backend matches those on text whose whitespace it has rewritten
        # Each added token as written and with its accents stripped, in any case: a text holding
        # one before or after normalizing goes to the backend.
        spelled = {form for content in contents for form in (content, _strip_accents(content))}
        added = re.compile("|".join(map(re.escape, sorted(spelled))), re.IGNORECASE) if spelled else None
        # tokenizers writes every one of these; a config without them is not one we reproduce.
        lowercase, strip_accents = normalizer.get("lowercase"), normalizer.get("strip_accents")
        prefix, longest = model.get("continuing_subword_prefix"), model.get("max_input_chars_per_word")
        if not isinstance(lowercase, bool) or not isinstance(strip_accents, (bool, type(None))):
            return None
        if not isinstance(prefix, str) or not isinstance(longest, int):
            return None
        strip = lowercase if strip_accents is None else strip_accents  # BertNormalizer's own rule
        pair = _template(config.get("post_processor"), "pair")
        return cls(vocab, prefix, unk_id, longest, lowercase, strip, single, pair, added)

    def encode(self, text: str, max_length: int | None, pair: str | None = None) -> EncodedRow | None:
        """The row the backend would encode for `text` (and `pair`), truncated to max_length tokens
        like its longest_first; or None: this input (or this max_length) is the backend's."""
        template = self._single if pair is None else self._pair
        if template is None:
            return None
        room = None if max_length is None else max_length - template.special_tokens
        if room is not None and room < 0:
            return None
        words = []
        for piece in (text,) if pair is None else (text, pair):
            normalized = self._normalize(piece)
            if normalized is None:
                return None
            words.append(self._words(normalized))
        if room is not None:
            words = _longest_first(words, room)
        by_text = dict(zip(("A", "B"), words))
        ids: list[int] = []
        types: list[int] = []
        for item, type_id in template.items:
            item_ids = [item] if isinstance(item, int) else by_text[item]
            ids.extend(item_ids)
            types.extend([type_id] * len(item_ids))
        input_ids = np.asarray(ids, dtype=np.int64)
        return EncodedRow(input_ids, np.ones_like(input_ids), np.asarray(types, dtype=np.int64))

    def _normalize(self, text: str) -> str | None:
        if self._added is not None and self._added.search(text) is not None:
            return None
        if not text.isascii():
            if not self._strip_accents:
                return None
            # Only the Combining Diacritical Marks block (all Mn), in one regex pass: when that
            # leaves ASCII, no other mark was there, so this is exactly _strip_accents.
            text = _DIACRITICS.sub("", unicodedata.normalize("NFD", text))
            if not text.isascii() or (self._added is not None and self._added.search(text) is not None):
                return None
        if ASCII_CONTROLS.search(text) is not None:
            return None
        return text.lower() if self._lowercase else text

    def _words(self, text: str) -> list[int]:
        ids: list[int] = []
        vocab, unk, longest = self._vocab, self._unk, self._max_word_chars
        for word in _WORDS.findall(text):
            if len(word) > longest:
                ids.append(unk)
                continue
            whole = vocab.get(word)
            if whole is not None:
                ids.append(whole)
            else:
                ids.extend(self._pieces(word))
        return ids

    def _pieces(self, word: str) -> list[int]:
        pieces: list[int] = []
        table, start, n = self._vocab, 0, len(word)
        while start < n:
            for end in range(n, start, -1):
                found = table.get(word[start:end])
                if found is not None:
                    pieces.append(found)
                    start, table = end, self._continuing
                    break
            else:
                return [self._unk]
        return pieces


def _strip_accents(text: str) -> str:
    """BertNormalizer's strip_accents: canonical decomposition, nonspacing marks dropped."""
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


@dataclass(frozen=True)
class Template:
    """A post-processor's template: special token ids (int) and the texts ("A", the pair's "B"),
    each with its type id."""

    items: tuple[tuple[int | str, int], ...]
    special_tokens: int


def _template(processor: dict[str, Any] | None, kind: Literal["single", "pair"]) -> Template | None:
    """The post-processor's template for one text or a pair; None if unsupported."""
    texts = ("A",) if kind == "single" else ("A", "B")
    if processor is None:  # no special tokens; a pair's texts keep type ids 0 and 1
        return Template(tuple((text, i) for i, text in enumerate(texts)), 0)
    if processor.get("type") == "BertProcessing":
        cls_id, sep_id = int(processor["cls"][1]), int(processor["sep"][1])
        single: tuple[tuple[int | str, int], ...] = ((cls_id, 0), ("A", 0), (sep_id, 0))
        return Template(single if kind == "single" else (*single, ("B", 1), (sep_id, 1)), len(texts) + 1)
    if processor.get("type") != "TemplateProcessing":
        return None
    specials = processor.get("special_tokens") or {}
    items: list[tuple[int | str, int]] = []
    for item in processor.get(kind) or ():
        piece = item.get("Sequence") or item.get("SpecialToken") or {}
        type_id = piece.get("type_id")
        if not isinstance(type_id, int):
            return None
        if "Sequence" in item and piece.get("id") in texts:
            items.append((piece["id"], type_id))
        elif "SpecialToken" in item and piece.get("id") in specials:
            items.extend((int(i), type_id) for i in specials[piece["id"]]["ids"])
        else:
            return None
    if sorted(i for i, _ in items if isinstance(i, str)) != list(texts):  # each text exactly once
        return None
    return Template(tuple(items), len(items) - len(texts))


def _longest_first(words: list[list[int]], room: int) -> list[list[int]]:
    """The backend's longest_first truncation to `room` tokens (special tokens not counted)."""
    if sum(map(len, words)) <= room:
        return words
    if len(words) == 1:
        return [words[0][:room]]
    n1, n2 = len(words[0]), len(words[1])
    swap = n1 > n2
    if swap:
        n1, n2 = n2, n1
    n2 = max(n1, room - n1)  # the longer is cut to what the shorter leaves, never below the shorter
    if (
        n1 + n2 > room
    ):  # not enough: both are cut, to half the room each (the longer, on a tie the second, gets the odd one)
        n1 = room // 2
        n2 = n1 + room % 2
    if swap:
        n1, n2 = n2, n1
    return [words[0][:n1], words[1][:n2]]
