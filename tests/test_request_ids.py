"""Fresh request ids (service/logs.py): unique in the process, and a forked child draws its own."""

from __future__ import annotations

import multiprocessing
import re

from service.logs import request_id

HEX32 = re.compile(r"[0-9a-f]{32}")


def _fresh_in_child(queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    queue.put(request_id(None))


def test_fresh_ids_are_distinct_and_shaped_like_a_uuid4() -> None:
    ids = [request_id(None) for _ in range(1000)] + [request_id("has space"), request_id("")]
    assert len(set(ids)) == len(ids) and all(HEX32.fullmatch(i) for i in ids)
    assert request_id("abc.DEF-123_4") == "abc.DEF-123_4"


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_fresh_in_child, args=(queue,))
    mine = request_id(None)
    child.start()
    theirs = queue.get(timeout=30)
    child.join(timeout=30)
    # Same counter position, so only the random half can tell them apart.
    assert theirs[:16] != mine[:16]
