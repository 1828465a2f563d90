"""Texts of an exact token count (with [CLS]/[SEP]), cut from the bundled calibration corpus.

Counts are checked with the served model's own tokenizer.json, so "32 tokens" means the row the
batcher sees is 32 long.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "service" / "export" / "data" / "calibration.txt"
FILLER = "the"  # one token in any WordPiece vocab trained on English


def corpus_sentences(path: Path = CORPUS) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [part.strip() for line in lines for part in line.split("\t") if part.strip()]


class TextBuilder:
    """Builds texts of exactly N tokens; different seeds start at different corpus sentences."""

    def __init__(self, tokenizer_json: Path, corpus: Path = CORPUS) -> None:
        self.tokenizer = Tokenizer.from_file(str(tokenizer_json))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.words = " ".join(corpus_sentences(corpus)).split()

    def count(self, text: str, pair: str | None = None) -> int:
        return len(self.tokenizer.encode(text, pair).ids)

    def text(self, tokens: int, seed: int = 0) -> str:
        """A text that encodes to exactly `tokens` ids, special tokens included."""
        if tokens < 3:
            raise ValueError("a text needs at least 3 tokens ([CLS] word [SEP])")
        start = (seed * 37) % len(self.words)
        words: list[str] = []
        i = start
        # Whole corpus words while they fit (a word is one or more WordPieces), then one-token filler.
        while True:
            candidate = [*words, self.words[i % len(self.words)]]
            if self.count(" ".join(candidate)) > tokens:
                break
            words = candidate
            i += 1
        while self.count(" ".join(words)) < tokens:
            words.append(FILLER)
        text = " ".join(words)
        if self.count(text) != tokens:
            raise AssertionError(f"built {self.count(text)} tokens, wanted {tokens}")
        return text

    def pair_context(self, question: str, context_tokens: int, seed: int = 0) -> str:
        """A context of `context_tokens` ids of its own (the question and specials come on top)."""
        return self.text(context_tokens + 2, seed)
