"""Step-by-step progress on stderr for the long export stages."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


class Progress:
    def __init__(self, total_steps: int, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.total = total_steps
        self.done = 0
        self.stream = stream or sys.stderr
        self.enabled = enabled

    @contextmanager
    def step(self, what: str) -> Iterator[None]:
        self.done += 1
        started = time.monotonic()
        self._say(f"[{self.done}/{self.total}] {what} ...")
        yield
        self._say(f"[{self.done}/{self.total}] {what}: done in {time.monotonic() - started:.1f}s")

    def note(self, message: str) -> None:
        self._say(f"      {message}")

    def _say(self, line: str) -> None:
        if self.enabled:
            print(line, file=self.stream, flush=True)
