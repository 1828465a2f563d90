"""Entity aggregation for token classification: tokens -> words -> entity groups -> merged windows.

Mirrors transformers 4.57 TokenClassificationPipeline.aggregate / aggregate_words / group_entities /
aggregate_overlapping_entities, including its quirks (a group's tag is the label after the first
'-', a `B-` token always opens a new group, labels without a B-/I- prefix continue a group).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from service.tasks.base import Entity

STRATEGIES = ("none", "simple", "first", "average", "max")
TokensToString = Callable[[list[str]], str]


@dataclass(frozen=True)
class PreEntity:
    """One non-special token: its word piece, label probabilities and character span."""

    word: str
    scores: np.ndarray  # [num_labels], softmaxed
    start: int
    end: int
    index: int
    is_subword: bool


@dataclass(frozen=True)
class Tagged:
    """A token (simple/none) or a word (first/average/max) with its chosen label."""

    entity: str
    score: np.floating
    word: str
    start: int
    end: int
    index: int | None = None


def aggregate(
    pre: Sequence[PreEntity], strategy: str, id2label: dict[int, str], to_string: TokensToString
) -> list[Entity]:
    if strategy in ("none", "simple"):
        tagged = [_tag_token(p, id2label) for p in pre]
    else:
        tagged = _tag_words(pre, strategy, id2label, to_string)
    if strategy == "none":
        return [Entity(float(t.score), t.word, t.start, t.end, entity=t.entity, index=t.index) for t in tagged]
    return group_entities(tagged, to_string)


def _label(id2label: dict[int, str], index: int) -> str:
    return id2label.get(index, f"LABEL_{index}")


def _tag_token(pre: PreEntity, id2label: dict[int, str]) -> Tagged:
    best = int(pre.scores.argmax())
    return Tagged(_label(id2label, best), pre.scores[best], pre.word, pre.start, pre.end, pre.index)


def _tag_words(
    pre: Sequence[PreEntity], strategy: str, id2label: dict[int, str], to_string: TokensToString
) -> list[Tagged]:
    """Fuse each word's pieces (a token plus the subword tokens after it) into one labelled word."""
    words: list[list[PreEntity]] = []
    for token in pre:
        if words and token.is_subword:
            words[-1].append(token)
        else:
            words.append([token])
    return [_tag_word(word, strategy, id2label, to_string) for word in words]


def _tag_word(pieces: list[PreEntity], strategy: str, id2label: dict[int, str], to_string: TokensToString) -> Tagged:
    if strategy == "first":
        scores = pieces[0].scores
    elif strategy == "max":
        # max() keeps the first piece among equals, like the pipeline.
        scores = max(pieces, key=lambda piece: piece.scores.max()).scores
    else:
        scores = np.nanmean(np.stack([piece.scores for piece in pieces]), axis=0)
    best = int(scores.argmax())
    word = to_string([piece.word for piece in pieces])
    return Tagged(_label(id2label, best), scores[best], word, pieces[0].start, pieces[-1].end)


def split_tag(label: str) -> tuple[str, str]:
    """("B"|"I", tag); a label without a B-/I- prefix counts as a continuation."""
    if label.startswith("B-"):
        return "B", label[2:]
    if label.startswith("I-"):
        return "I", label[2:]
    return "I", label


def group_entities(tagged: Sequence[Tagged], to_string: TokensToString) -> list[Entity]:
    """Adjacent items with the same tag form one entity, unless the newcomer is a B- label."""
    groups: list[list[Tagged]] = []
    for item in tagged:
        if groups:
            bi, tag = split_tag(item.entity)
            _, last_tag = split_tag(groups[-1][-1].entity)
            if tag == last_tag and bi != "B":
                groups[-1].append(item)
                continue
        groups.append([item])
    return [_group(group, to_string) for group in groups]


def _group(group: list[Tagged], to_string: TokensToString) -> Entity:
    score = np.mean(np.nanmean([item.score for item in group]))
    return Entity(
        score=float(score),
        word=to_string([item.word for item in group]),
        start=group[0].start,
        end=group[-1].end,
        # Not split_tag: the pipeline names the group after whatever follows the first '-'.
        entity_group=group[0].entity.split("-", 1)[-1],
    )


def merge_overlapping(entities: Sequence[Entity]) -> list[Entity]:
    """Entities from overlapping windows: keep the longer of two overlapping spans, then the higher score."""
    if not entities:
        return []
    ordered = sorted(entities, key=lambda e: _span(e)[0])
    merged: list[Entity] = []
    previous = ordered[0]
    for entity in ordered:
        (start, end), (prev_start, prev_end) = _span(entity), _span(previous)
        if prev_start <= start < prev_end:
            length, prev_length = end - start, prev_end - prev_start
            if length > prev_length or (length == prev_length and entity.score > previous.score):
                previous = entity
        else:
            merged.append(previous)
            previous = entity
    merged.append(previous)
    return merged


def _span(entity: Entity) -> tuple[int, int]:
    return (entity.start or 0, entity.end or 0)
