"""Request bodies for the load tests: fixed token lengths, mixed lengths, long-context QA, NER."""

from loadtest.workloads.bodies import (
    Workload,
    classify_fixed,
    classify_mixed,
    classify_spread,
    ner_fixed,
    qa_long_context,
    write_bodies,
)
from loadtest.workloads.texts import TextBuilder

__all__ = [
    "TextBuilder",
    "Workload",
    "classify_fixed",
    "classify_mixed",
    "classify_spread",
    "ner_fixed",
    "qa_long_context",
    "write_bodies",
]
