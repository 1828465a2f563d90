"""The tokenizer's ASCII shortcut encodes exactly what the tokenizer's own normalizer would.

The reference is the backend `tokenizers.Tokenizer` as the checkpoint ships it (BertNormalizer),
configured for each call the way transformers' fast tokenizers are. Texts are drawn to hit what
BertNormalizer does beyond lowercasing: control characters it drops (their offsets shift), tabs
and newlines, accents and CJK (the shortcut must not take those), and special-token strings in
either case.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tokenizers import AddedToken, Encoding, Tokenizer

from service import tokenization
from service.errors import InvalidInput
from service.tokenization import EncodedText, TextTokenizer

MAX_SEQ_LEN = 40
PIECES = st.one_of(
    st.text(alphabet="abcxyzABCXYZ0129 .,!?'-#", min_size=1, max_size=12),
    st.sampled_from(["[CLS]", "[cls]", "[MASK]", "[SEP]", "[UNK]", "\t", "\n", "\r\n", "\x00", "\x07", "\x0b", "\x1f"]),
    st.sampled_from(["\x7f", "São", "naïve", "東京", "Ⅸ", "ß", "\u0301", "\u00a0", "\u200b", "🙂"]),
)
TEXTS = st.lists(PIECES, min_size=1, max_size=30).map("".join)
SETTINGS = settings(max_examples=200, deadline=None, derandomize=True)


def _reference(
    tokenizer: Tokenizer, text: str, pair: str | None, max_length: int | None, stride: int, strategy: str
) -> list[Encoding]:
    reference = Tokenizer.from_str(tokenizer.to_str())
    reference.no_padding()
    if max_length is None:
        reference.no_truncation()
    else:
        reference.enable_truncation(max_length, stride=stride, strategy=strategy)
    encoding = reference.encode(text, pair)
    return [encoding, *encoding.overflowing] if max_length is not None else [encoding]


def _fields(encoded: EncodedText | Encoding) -> tuple[object, ...]:
    if isinstance(encoded, EncodedText):
        return (
            encoded.ids.tolist(),
            encoded.type_ids.tolist(),
            list(encoded.offsets),
            list(encoded.tokens),
            list(encoded.word_ids),
        )
    return (encoded.ids, encoded.type_ids, encoded.offsets, encoded.tokens, encoded.word_ids)


def _check(got: list[EncodedText], want: list[Encoding]) -> None:
    assert [_fields(e) for e in got] == [_fields(e) for e in want]


@SETTINGS
@given(text=TEXTS, pair=st.none() | TEXTS)
@example(text="Hello World\tagain\nAND [MASK] [mask]", pair=None)
@example(text="a\x0bb c\x7fd", pair="Q\x00?")
def test_the_ascii_shortcut_encodes_like_the_tokenizer(tokenizer: Tokenizer, text: str, pair: str | None) -> None:
    tok = TextTokenizer(Tokenizer.from_str(tokenizer.to_str()), MAX_SEQ_LEN)
    _check([tok.encode(text, pair)], _reference(tokenizer, text, pair, None, 0, "longest_first"))
    _check([tok.encode_truncated(text, pair, 12)], _reference(tokenizer, text, pair, 12, 0, "longest_first")[:1])
    if pair is None:
        _check(tok.encode_windows(text, 10, 3), _reference(tokenizer, text, None, 10, 3, "longest_first"))
    else:
        try:
            windows = tok.encode_pair_windows(pair, text, 24, 2)
        except InvalidInput:  # the question leaves no room for the context: nothing to compare
            return
        _check(windows, _reference(tokenizer, pair, text, 24, 2, "only_second"))


def test_the_demo_tokenizer_takes_the_shortcut_for_clean_ascii(store: Path) -> None:
    tok = TextTokenizer.from_file(store / "sequence-classification" / "tokenizer.json", MAX_SEQ_LEN)
    assert tok.ascii_shortcut("Plain ASCII, with a tab\tand a newline\n.", None)
    assert not tok.ascii_shortcut("São Paulo", None)
    assert not tok.ascii_shortcut("a bell \x07 rings", None)
    assert not tok.ascii_shortcut("ascii", "Zürich")


def test_a_first_request_at_the_models_length_builds_no_tokenizer_copy(
    tokenizer: Tokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Building a truncating copy parses the whole tokenizer again (~0.65 ms for a base vocabulary):
    the copies classification and NER use are built with the TextTokenizer, not by a request."""
    tok = TextTokenizer(Tokenizer.from_str(tokenizer.to_str()), MAX_SEQ_LEN)
    built: list[str] = []
    real = tokenization.Tokenizer.from_str
    monkeypatch.setattr(tokenization.Tokenizer, "from_str", lambda config: built.append(config) or real(config))
    tok.encode_truncated("Plain ASCII text", None, MAX_SEQ_LEN)
    tok.encode_truncated("Texte accentué", None, MAX_SEQ_LEN)
    assert built == []
    tok.encode_truncated("another length", None, MAX_SEQ_LEN - 1)  # any other setting: built on first use
    assert len(built) == 1


TEXT = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda"


def test_windows_at_the_exact_bounds_of_their_room(tokenizer: Tokenizer) -> None:
    """A stride must leave room to advance, or the backend panics (a 500): the bound is exact.
    A text that fits its window needs no room at all."""
    tok = TextTokenizer(Tokenizer.from_str(tokenizer.to_str()), MAX_SEQ_LEN)
    specials = tok.encode("").length  # [CLS] [SEP]
    n = tok.encode(TEXT).length
    assert [w.length for w in tok.encode_windows(TEXT, n, n)] == [n]
    room = (n - 1) - specials
    with pytest.raises(InvalidInput, match="no room to advance"):
        tok.encode_windows(TEXT, n - 1, room)
    windows = tok.encode_windows(TEXT, n - 1, room - 1)
    assert len(windows) > 1 and max(w.length for w in windows) == n - 1


def test_question_windows_at_the_exact_bounds_of_their_room(tokenizer: Tokenizer) -> None:
    tok = TextTokenizer(Tokenizer.from_str(tokenizer.to_str()), MAX_SEQ_LEN)
    question = "which letter"
    pair_specials = tok.encode("", "").length  # [CLS] q [SEP] c [SEP]
    asked = tok.encode(question).length - tok.encode("").length
    n = tok.encode(question, TEXT).length
    assert [w.length for w in tok.encode_pair_windows(question, TEXT, n, n)] == [n]
    room = (n - 1) - pair_specials - asked
    with pytest.raises(InvalidInput, match="doc_stride"):
        tok.encode_pair_windows(question, TEXT, n - 1, room)
    windows = tok.encode_pair_windows(question, TEXT, n - 1, room - 1)
    assert len(windows) > 1 and max(w.length for w in windows) == n - 1
    # No room left by the question is its own error; one place of room is the stride's.
    with pytest.raises(InvalidInput, match="question is too long"):
        tok.encode_pair_windows(question, TEXT, pair_specials + asked, 0)
    with pytest.raises(InvalidInput, match="doc_stride 1"):
        tok.encode_pair_windows(question, TEXT, pair_specials + asked + 1, 1)


def _variant(tokenizer: Tokenizer, name: str) -> Tokenizer:
    """The demo tokenizer with what other checkpoints ship: a cased BertNormalizer, another
    normalizer altogether, or an added token (matched on normalized text) that holds whitespace or
    an accent."""
    config = json.loads(tokenizer.to_str())
    if name == "cased":
        config["normalizer"]["lowercase"] = False
    elif name == "strip-lowercase":
        config["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "Strip", "strip_left": True,
                                "strip_right": True}, {"type": "Lowercase"}]}  # fmt: skip
    variant = Tokenizer.from_str(json.dumps(config))
    if name == "added-whitespace-token":
        variant.add_tokens([AddedToken("big\tcat", normalized=True)])
    if name == "added-accented-token":
        variant.add_tokens([AddedToken("Café", normalized=True)])
    return variant


VARIANT_TEXTS = ["Hello World", "  Padded ASCII  ", "a big cat", "a big\tcat", "A BIG\tCAT [MASK]", "x\ny", "a cafe"]


@pytest.mark.parametrize("name", ["cased", "strip-lowercase", "added-whitespace-token", "added-accented-token"])
def test_other_normalizers_encode_like_the_tokenizer(tokenizer: Tokenizer, name: str) -> None:
    shipped = _variant(tokenizer, name)
    tok = TextTokenizer(Tokenizer.from_str(shipped.to_str()), MAX_SEQ_LEN)
    for text in VARIANT_TEXTS:
        _check([tok.encode(text)], _reference(shipped, text, None, None, 0, "longest_first"))
        _check(
            [tok.encode_truncated(text, "Pair Text", 6)],
            _reference(shipped, text, "Pair Text", 6, 0, "longest_first")[:1],
        )
