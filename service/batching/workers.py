"""RunnerThread: one runner's own thread, taking one batch at a time from the event loop.

Why not a ThreadPoolExecutor: a lone caller's batch crosses to a worker thread and back in series
with its run, right after the run has left every cache cold. The executor's path (a work item, a
concurrent Future with its condition and callbacks) cost ~20 us each way more than a simple queue
and a direct callback, measured in one process with a real run between the hops. A runner runs
one batch at a time (the batcher hands it a batch only while it is free), so nothing ever waits
in its queue and nothing needs cancelling there.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Job = Callable[[], Any]
Answer = Callable[[Any, BaseException | None], None]  # (result, error), called on the runner's thread


class RunnerThread:
    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Job, Answer] | None] = queue.SimpleQueue()
        # A daemon: an idle runner must not keep the process alive at exit (a batcher never
        # stopped, in tests); waiting for runs in flight is DynamicBatcher.stop()'s business.
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Job, answer: Answer) -> None:
        """Run `job` on this thread, then call `answer(result, error)` there."""
        self._jobs.put((job, answer))

    def stop(self) -> None:
        """The thread ends after the job it is running, if any (it is not waited for here)."""
        self._jobs.put(None)

    def _serve(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            job, answer = item
            try:
                result, error = job(), None
            except BaseException as exc:  # answered to the loop, which logs it and fails the rows
                result, error = None, exc
            try:
                answer(result, error)
            except Exception:  # a bug in the answer must not end the runner's thread
                log.exception("answering a finished batch failed")
            del item, job, answer, result, error  # hold nothing of the batch while idle
