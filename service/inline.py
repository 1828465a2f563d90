"""Where a request's Python work runs: on the event loop when it is small, in the pool when not.

Tokenizing (HF `tokenizers`' single `encode`) and the pipelines' post-processing hold the GIL
while they work (measured: two threads encoding at once finish no sooner than one doing both),
so running them in the tokenizer pool buys no parallelism with the loop. What the pool buys is a
bound on how long the loop waits: the worker gives the GIL up every switch interval, so other
connections are served during a long job. What it costs is two thread hops per job (submit, then
the result's wake-up of the loop): 0.1-0.2 ms each on this VM, in series with the request.

So a job predicted to take at most `budget_s` runs inline, anything larger (or unknown) in the
pool. The prediction is learned per (model, phase) from the jobs themselves, as seconds per unit
of size (characters of input text for tokenizing, tokens of model rows for post-processing), an
exponentially weighted average over recent jobs: it follows the task's real cost (a token
classifier's entity grouping costs ~40x a sequence classifier's softmax per token) and the
machine's, with no per-task constants.
"""

from __future__ import annotations

from collections.abc import Hashable

DEFAULT_BUDGET_S = 0.0005  # ~ the two hops it saves, and a stall other connections do not notice
_WEIGHT = 0.2  # of the newest job in the running average


class InlineWork:
    """Learns seconds per unit of work per key and says whether a job is small enough to inline."""

    def __init__(self, budget_s: float = DEFAULT_BUDGET_S) -> None:
        self.budget_s = budget_s
        self._rate: dict[Hashable, float] = {}  # key -> seconds per unit

    def inline(self, key: Hashable, units: int | None) -> bool:
        """True when the job's predicted time is within budget; never for a key not yet seen, nor
        for a job of unknown size (None)."""
        rate = self._rate.get(key)
        return rate is not None and units is not None and rate * max(units, 1) <= self.budget_s

    def observe(self, key: Hashable, units: int | None, seconds: float) -> None:
        if units is None:
            return
        rate = seconds / max(units, 1)
        previous = self._rate.get(key)
        self._rate[key] = rate if previous is None else previous + _WEIGHT * (rate - previous)
