"""service/wordpiece.py gives exactly the row the backend tokenizer gives, or leaves the input to it.

The reference is the backend `tokenizers.Tokenizer` as the checkpoint ships it, truncating like
transformers' fast tokenizers. Texts and pairs are drawn to hit each of the Python path's steps:
ASCII punctuation (each its own word), words longer than the WordPiece limit or without a match,
accents BertNormalizer strips (and letters it cannot reduce to ASCII), control characters, CJK,
non-ASCII whitespace, added tokens in any case or with accents, and longest_first between the two
texts of a pair.
"""

from __future__ import annotations

import itertools
import json
import string
from dataclasses import dataclass, field

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tokenizers import BertWordPieceTokenizer, Tokenizer, processors

from service.batching.rows import EncodedRow
from service.tokenization import TextTokenizer
from service.wordpiece import FastWordPiece

PIECES = st.one_of(
    st.text(alphabet="abcxyzABCXYZ0129 ", min_size=1, max_size=12),
    st.sampled_from(list(string.punctuation) + ["\t", "\n", "\r\n", "a" * 101, "ab" * 50, "qqqq", "zyx9"]),
    st.sampled_from(["[CLS]", "[cls]", "[MASK]", "[mAsK]", "[MÁSK]", "[SEP]", "[UNK]", "\x00", "\x07", "\x0b", "\x7f"]),
    st.sampled_from(["São", "naïve", "Éric", "e\u0301", "\u0301", "Å", "\u212a", "Đoković", "ø", "ß", "İ", "ﬁ"]),
    st.sampled_from(["a\u1dc0b", "x\u20d7", "\u0591", "Ç\u0327"]),  # nonspacing marks beyond U+0300-036F
    st.sampled_from(["東京", "Ⅸ", "\u00a0", "\u2003", "\u200b", "\u0085", "\ufeff", "🙂", "\ufffd"]),
)
TEXTS = st.lists(PIECES, min_size=0, max_size=30).map("".join)
SETTINGS = settings(max_examples=300, deadline=None, derandomize=True)


def _reference(
    tokenizer: Tokenizer, text: str, max_length: int | None, pair: str | None = None
) -> tuple[list[int], ...]:
    reference = Tokenizer.from_str(tokenizer.to_str())
    reference.no_padding()
    if max_length is None:
        reference.no_truncation()
    else:
        reference.enable_truncation(max_length, stride=0, strategy="longest_first")
    encoding = reference.encode(text, pair)
    return (encoding.ids, encoding.type_ids, encoding.attention_mask)


def _fields(row: EncodedRow) -> tuple[list[int], ...]:
    return (row.input_ids.tolist(), row.token_type_ids.tolist(), row.attention_mask.tolist())


@SETTINGS
@given(text=TEXTS, pair=st.none() | TEXTS, max_length=st.none() | st.integers(3, 40))
@example(text="Hello, World! It's 9:30 -- isn't it?", pair=None, max_length=None)
@example(text="Éric naïve São " + "x" * 101, pair=None, max_length=8)
@example(text="a b c d e f g h", pair="i j", max_length=9)  # only the longer text is cut
@example(text="a b c d e f g", pair="h i j k l m n o", max_length=10)  # both cut; the longer gets the odd one
def test_a_classification_row_is_the_tokenizers(
    tokenizer: Tokenizer, text: str, pair: str | None, max_length: int | None
) -> None:
    tok = TextTokenizer(Tokenizer.from_str(tokenizer.to_str()), 40)
    row = tok.encode_row(text, pair, max_length)
    assert _fields(row) == _reference(tokenizer, text, max_length, pair)
    assert {a.dtype.name for a in (row.input_ids, row.attention_mask, row.token_type_ids)} == {"int64"}  # the graph's


def test_the_demo_tokenizer_takes_python_wordpiece_for_text_that_normalizes_to_ascii(tokenizer: Tokenizer) -> None:
    words = FastWordPiece.from_config(json.loads(tokenizer.to_str()))
    assert words is not None
    for text in ["Plain ASCII, with a tab\tand a newline\n.", "Éric Müller à São Paulo", "", "x" * 300]:
        row = words.encode(text, 40)
        assert row is not None and _fields(row) == _reference(tokenizer, text, 40)
    for text in ["Đoković", "東京", "a bell \x07 rings", "no\u00a0break", "a [MASK] here", "[másk]", "[cls]"]:
        assert words.encode(text, 40) is None, text  # the backend's
    assert words.encode("short", 1) is None  # no room for [CLS] and [SEP]: the backend decides
    exact_room = words.encode("short", 2)  # room for [CLS] and [SEP] only
    assert exact_room is not None and _fields(exact_room) == _reference(tokenizer, "short", 2)


def _variant(tokenizer: Tokenizer, name: str) -> Tokenizer:
    config = json.loads(tokenizer.to_str())
    if name == "cased":
        config["normalizer"]["lowercase"] = False
    elif name == "lowercase-keep-accents":
        config["normalizer"]["strip_accents"] = False
    elif name == "cased-strip-accents":
        config["normalizer"].update(lowercase=False, strip_accents=True)
    elif name == "bert-processing":
        ids = config["model"]["vocab"]
        config["post_processor"] = {"type": "BertProcessing", "sep": ["[SEP]", ids["[SEP]"]],
                                    "cls": ["[CLS]", ids["[CLS]"]]}  # fmt: skip
    elif name == "no-post-processor":
        config["post_processor"] = None
    elif name == "typed-template":
        config["post_processor"]["single"] = [{"SpecialToken": {"id": "[CLS]", "type_id": 1}},
                                              {"Sequence": {"id": "A", "type_id": 2}},
                                              {"SpecialToken": {"id": "[SEP]", "type_id": 3}},
                                              {"SpecialToken": {"id": "[CLS]", "type_id": 4}}]  # fmt: skip
    elif name == "no-added-tokens":
        config["added_tokens"] = []
    elif name == "short-words":
        config["model"]["max_input_chars_per_word"] = 5
    elif name == "accented-added-token":
        config["added_tokens"].append({"id": 5, "content": "Café", "single_word": False, "lstrip": False,
                                       "rstrip": False, "normalized": True, "special": False})  # fmt: skip
    return Tokenizer.from_str(json.dumps(config))


VARIANT_TEXTS = ["Hello World", "  Padded ASCII  ", "São Paulo, Éric", "MIXED case Words!", "internationalization",
                 "a cafe", "a CAFÉ", "x" * 7, "ab-cd_ef", "[MASK] me"]  # fmt: skip
VARIANTS = ["cased", "lowercase-keep-accents", "cased-strip-accents", "bert-processing", "no-post-processor",
            "typed-template", "short-words", "accented-added-token", "no-added-tokens"]  # fmt: skip


def _taken(name: str, text: str) -> bool:
    """Whether the Python path should encode `text` itself under variant `name`."""
    if "[MASK]" in text and name != "no-added-tokens":
        return False
    if "caf" in text.lower() and name == "accented-added-token":  # "Café" matches after normalizing
        return False
    return text.isascii() or name not in ("cased", "lowercase-keep-accents")  # accents stripped or not


@pytest.mark.parametrize("name", VARIANTS)
def test_other_bert_configurations_encode_like_the_tokenizer(tokenizer: Tokenizer, name: str) -> None:
    shipped = _variant(tokenizer, name)
    tok = TextTokenizer(Tokenizer.from_str(shipped.to_str()), 40)
    words = FastWordPiece.from_config(json.loads(shipped.to_str()))
    assert tok.python_wordpiece and words is not None
    for text in VARIANT_TEXTS:
        for max_length in (None, 4, 40):
            assert _fields(tok.encode_row(text, None, max_length)) == _reference(shipped, text, max_length), text
            got = tok.encode_row(text, "Pair, text", max_length)
            assert _fields(got) == _reference(shipped, text, max_length, "Pair, text"), text
        assert (words.encode(text, 40) is not None) == _taken(name, text), text
        assert (words.encode("Pair, text", 40, text) is not None) == _taken(name, text), text


def _template(*items: dict[str, object]) -> dict[str, object]:
    ids = {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]}}
    return {"type": "TemplateProcessing", "single": list(items), "pair": [], "special_tokens": ids}


WORDPIECE = {"type": "WordPiece", "unk_token": "[UNK]", "vocab": {"[UNK]": 0}}
A = {"Sequence": {"id": "A", "type_id": 0}}
CLS = {"SpecialToken": {"id": "[CLS]", "type_id": 0}}


@pytest.mark.parametrize(
    "change",
    [
        {"post_processor": _template(CLS)},  # no text in the template
        {"post_processor": _template(A, CLS, A)},  # the text twice
        {"post_processor": _template({"SpecialToken": {"id": "[XYZ]", "type_id": 0}}, A)},  # undeclared token
        {"post_processor": _template({"Sequence": {"id": "B", "type_id": 1}}, A)},  # the pair's text
        {"post_processor": _template({"Sequence": {"id": "A"}})},  # no type id
        {"post_processor": _template(CLS, {"SpecialToken": {"id": "A", "type_id": 0}})},  # a token named "A"
        {"normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True}},  # no lowercase
        {"normalizer": {"type": "Lowercase", "lowercase": True, "strip_accents": None}},  # not BERT's
        {"model": {**WORDPIECE, "max_input_chars_per_word": 100}},  # no prefix
        {"model": {**WORDPIECE, "continuing_subword_prefix": "##"}},  # no limit
    ],
)
def test_configs_it_cannot_vouch_for_are_left_to_the_backend(tokenizer: Tokenizer, change: dict[str, object]) -> None:
    config = json.loads(tokenizer.to_str())
    assert FastWordPiece.from_config(config) is not None
    assert FastWordPiece.from_config({**config, **change}) is None


def _unsupported(tokenizer: Tokenizer, name: str) -> Tokenizer:
    config = json.loads(tokenizer.to_str())
    if name == "another-normalizer":
        config["normalizer"] = {"type": "Lowercase"}
    elif name == "another-pre-tokenizer":
        config["pre_tokenizer"] = {"type": "Whitespace"}
    elif name == "another-post-processor":
        config["post_processor"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                                    "use_regex": True}  # fmt: skip
    elif name == "whitespace-added-token":
        config["added_tokens"].append({"id": 5, "content": "big\tcat", "single_word": False, "lstrip": False,
                                       "rstrip": False, "normalized": True, "special": False})  # fmt: skip
    return Tokenizer.from_str(json.dumps(config))


@pytest.mark.parametrize(
    "name", ["another-normalizer", "another-pre-tokenizer", "another-post-processor", "whitespace-added-token"]
)
def test_other_tokenizers_are_left_to_the_backend(tokenizer: Tokenizer, name: str) -> None:
    shipped = _unsupported(tokenizer, name)
    tok = TextTokenizer(Tokenizer.from_str(shipped.to_str()), 40)
    assert not tok.python_wordpiece
    for text in VARIANT_TEXTS + ["a big\tcat", "a big cat"]:
        assert _fields(tok.encode_row(text, None, 40)) == _reference(shipped, text, 40), text


@dataclass
class LargeVocabulary:
    backend: Tokenizer
    tokenizer: TextTokenizer
    references: dict[int | None, Tokenizer] = field(default_factory=dict)  # by max_length

    def reference(self, text: str, pair: str | None, max_length: int | None) -> tuple[list[int], ...]:
        if max_length not in self.references:  # parsing a large vocabulary is slow: once per setting
            reference = self.references[max_length] = Tokenizer.from_str(self.backend.to_str())
            reference.no_padding()
            if max_length is None:
                reference.no_truncation()
            else:
                reference.enable_truncation(max_length, stride=0, strategy="longest_first")
        encoding = self.references[max_length].encode(text, pair)
        return (encoding.ids, encoding.type_ids, encoding.attention_mask)


@pytest.fixture(scope="module")
def large_vocabulary() -> LargeVocabulary:
    """A BERT tokenizer with a base-size vocabulary (~19k entries): every string of one to three
    letters, continuing pieces of one or two characters, punctuation and digits. The demo vocabulary
    is small; here most words are found whole or in a few long pieces, as with a real checkpoint."""
    letters = string.ascii_lowercase
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *string.punctuation, *string.digits]
    vocab += ["".join(p) for n in (1, 2, 3) for p in itertools.product(letters, repeat=n)]
    vocab += ["##" + "".join(p) for n in (1, 2) for p in itertools.product(letters + string.digits, repeat=n)]
    wordpiece = BertWordPieceTokenizer({token: i for i, token in enumerate(dict.fromkeys(vocab))}, lowercase=True)
    backend = Tokenizer.from_str(wordpiece._tokenizer.to_str())
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return LargeVocabulary(backend, TextTokenizer(Tokenizer.from_str(backend.to_str()), 40))


@settings(max_examples=150, deadline=None, derandomize=True)
@given(text=TEXTS, pair=st.none() | TEXTS, max_length=st.none() | st.integers(3, 40))
def test_a_base_size_vocabulary_encodes_like_the_tokenizer(
    large_vocabulary: LargeVocabulary, text: str, pair: str | None, max_length: int | None
) -> None:
    assert large_vocabulary.tokenizer.python_wordpiece
    got = large_vocabulary.tokenizer.encode_row(text, pair, max_length)
    assert _fields(got) == large_vocabulary.reference(text, pair, max_length)
