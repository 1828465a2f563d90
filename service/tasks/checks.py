"""Input and parameter checks shared by the three tasks; every violation is an InvalidInput."""

from __future__ import annotations

from collections.abc import Sequence

from service.errors import InvalidInput
from service.tasks.base import Limits


def check_count(inputs: Sequence[object], limits: Limits) -> None:
    if not inputs:
        raise InvalidInput("no inputs given: send at least one")
    if len(inputs) > limits.max_inputs:
        raise InvalidInput(f"too many inputs: {len(inputs)} given, at most {limits.max_inputs} per request")


def check_text(text: object, what: str, limits: Limits) -> str:
    """`what` names the field for the message, e.g. "inputs[2].context"."""
    if not isinstance(text, str):
        raise InvalidInput(f"{what} must be a string, not {type(text).__name__}")
    if not text.strip():
        raise InvalidInput(f"{what} is empty")
    if len(text) > limits.max_chars:
        raise InvalidInput(f"{what} is {len(text)} characters long, over the limit of {limits.max_chars}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate (JSON allows "\ud800"); tokenizers would raise TypeError
        raise InvalidInput(f"{what} is not valid Unicode: lone surrogate at character {exc.start}") from None
    return text


def check_fits(length: int, max_seq_len: int, what: str, hint: str) -> None:
    """A sequence the model would see whole must fit its position embeddings."""
    if length > max_seq_len:
        raise InvalidInput(f"{what} is {length} tokens long, over the model's limit of {max_seq_len} tokens; {hint}")


def check_int(value: object, name: str, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name} must be an integer, not {value!r}")
    if value < minimum:
        raise InvalidInput(f"{name} must be >= {minimum} (got {value})")
    if maximum is not None and value > maximum:
        raise InvalidInput(f"{name} must be <= {maximum} (got {value})")
    return value


def check_choice(value: object, name: str, choices: Sequence[str]) -> str:
    """Case-insensitive like the pipelines (they look the value up upper-cased in an enum)."""
    if isinstance(value, str) and value.lower() in choices:
        return value.lower()
    raise InvalidInput(f"{name} must be one of {', '.join(choices)} (got {value!r})")
