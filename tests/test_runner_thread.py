"""RunnerThread: a runner's own thread keeps serving after a failing job or a failing answer."""

from __future__ import annotations

import threading

import pytest

from service.batching.workers import RunnerThread


def test_failures_are_answered_and_the_thread_serves_on(caplog: pytest.LogCaptureFixture) -> None:
    thread = RunnerThread("batcher-test_0")
    answers: list[tuple[object, object]] = []
    served = threading.Event()

    def record(result: object, error: BaseException | None) -> None:
        answers.append((result, type(error).__name__ if error else None))
        served.set()

    def broken_answer(result: object, error: BaseException | None) -> None:
        raise KeyError("a bug in the answer")

    def fail() -> None:
        raise ValueError("the run failed")

    thread.submit(fail, record)
    assert served.wait(10)
    served.clear()
    thread.submit(lambda: 1, broken_answer)
    thread.submit(lambda: threading.current_thread().name, record)
    assert served.wait(10)
    assert answers == [(None, "ValueError"), ("batcher-test_0", None)]
    assert "answering a finished batch failed" in caplog.text
    thread.stop()
    thread._thread.join(10)
    assert not thread._thread.is_alive()
