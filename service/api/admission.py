"""Early admission: refuse an inference request before routing and parsing when its queue is full.

Under overload most requests are refused. A refusal that goes through FastAPI's routing, JSON
parsing, validation and dependencies costs CPU that the accepted requests' batches need on a
small machine. The middleware asks `Admission.refusal` once the body is read (reading it keeps
the connection reusable) and, if every model the route could reach has a full queue, answers 429
+ Retry-After at once, counted in the metrics exactly as the route would count it.

Only the routes whose model set is known from the path: /v1/{classify,token-classify,answer}
(any model of the task may be named in the body, so all of them must be full) and the
unversioned /v2/models/{name}/infer. Anything else, and any doubt (unknown model, loading,
draining), goes the normal way, which gives the documented error.
"""

from __future__ import annotations

import re

from starlette.types import Scope

from service.core import Core
from service.errors import Overloaded

V1_TASKS = {
    "/v1/classify": "sequence-classification",
    "/v1/token-classify": "token-classification",
    "/v1/answer": "question-answering",
}
V2_INFER = re.compile(r"^/v2/models/([^/]+)/infer$")
TRANSPORT = "http"


class Admission:
    def __init__(self, core: Core) -> None:
        self._core = core

    def refusal(self, scope: Scope) -> Overloaded | None:
        """The Overloaded error to answer with now, or None to let the app handle the request."""
        if scope.get("method") != "POST" or self._core.state.draining:
            return None
        path = scope["path"]
        registry = self._core.registry
        task = V1_TASKS.get(path)
        if task is not None:
            handles = registry.serving(task)
        else:
            match = V2_INFER.match(path)
            handle = registry.find(match.group(1)) if match else None
            handles = [handle] if handle is not None else []
        if not handles or not all(h.batcher.is_full() for h in handles):
            return None
        names = ", ".join(repr(h.name) for h in handles)
        error = Overloaded(
            f"the queue of {names} is full", retry_after_s=min(h.batcher.retry_after_s() for h in handles)
        )
        model = handles[0].name if len(handles) == 1 else ""
        try:
            with self._core.metrics.track(TRANSPORT, handles[0].task, model):
                raise error
        except Overloaded:
            pass
        return error
