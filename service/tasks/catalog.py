"""The served tasks, one Task object each: name, handler, parameters (with THE defaults), outputs.

A fourth task is one handler module plus one entry here (and its v2 mapping in service/v2/tasks.py).
Parameter defaults live only in the parameter dataclasses of service/tasks/base.py; the REST
schemas and the v2 parameter parsing read them from there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from service.tasks.base import AnswerParams, ClassifyParams, Limits, ModelInfo, TaskHandler, TokenClassifyParams
from service.tasks.question_answering import QuestionAnsweringHandler
from service.tasks.sequence_classification import SequenceClassificationHandler
from service.tasks.token_classification import TokenClassificationHandler
from service.tokenization import TextTokenizer

HandlerFactory = Callable[[TextTokenizer, ModelInfo, Limits], TaskHandler[Any, Any, Any]]


@dataclass(frozen=True)
class Task:
    name: str
    make_handler: HandlerFactory
    params: type  # the parameter dataclass; `params()` holds every default
    token_level: tuple[bool, ...]  # per graph output: [batch, sequence, ...] (cut per row) or [batch, ...]


SEQUENCE_CLASSIFICATION = Task("sequence-classification", SequenceClassificationHandler, ClassifyParams, (False,))
TOKEN_CLASSIFICATION = Task("token-classification", TokenClassificationHandler, TokenClassifyParams, (True,))
QUESTION_ANSWERING = Task("question-answering", QuestionAnsweringHandler, AnswerParams, (True, True))

TASKS: dict[str, Task] = {t.name: t for t in (SEQUENCE_CLASSIFICATION, TOKEN_CLASSIFICATION, QUESTION_ANSWERING)}
