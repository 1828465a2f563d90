"""The DataPlane over a real registry (tiny exported models): readiness, model state, calls, admission."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from service.config import Settings
from service.core import Core, build_core, load_models, stop_core
from service.errors import DeadlineExceeded, ModelNotFound, NotReady, Overloaded, WrongTask
from service.tasks.base import AnswerParams, ClassifyParams, QAInput, TextInput, TokenClassifyParams

CLS, NER, QA = "sequence-classification", "token-classification", "question-answering"


def _requests(core: Core, **labels: str) -> float:
    return core.metrics.registry.get_sample_value("squeezeserve_requests_total", labels) or 0.0


def _with_core(store: Path, body: Callable[[Core], Awaitable[None]], load: bool = True, **overrides: Any) -> None:
    async def main() -> None:
        settings = Settings(
            **{"store_dir": store, "session_instances": 1, "intra_op_threads": 1, "warmup": False, **overrides}
        )
        core = build_core(settings)
        if load:
            await load_models(core)
        try:
            await body(core)
        finally:
            await stop_core(core, timeout_s=5)

    asyncio.run(main())


@pytest.fixture(scope="module")
def two_models(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("plane")
    for name in (CLS, QA):
        shutil.copytree(store / name, root / name)
    return root


def test_readiness_follows_loading_and_drain(two_models: Path) -> None:
    async def body(core: Core) -> None:
        plane = core.plane
        assert plane.readiness() == "loading" and not plane.ready
        assert not plane.model_ready(CLS)  # before the scan any name may exist
        with pytest.raises(NotReady, match="^models are still loading$"):
            plane.model_status(CLS)
        await load_models(core)
        assert plane.readiness() == "ready" and plane.ready and plane.live
        assert plane.model_ready(CLS) and plane.model_ready(CLS, "1")
        plane.begin_drain()
        assert plane.readiness() == "draining" and not plane.model_ready(CLS)
        with plane.call("test", CLS, None) as call:  # still served while draining
            assert call.model == CLS
        plane.stop_accepting()
        plane.begin_drain()  # a later drain call does not reopen
        with pytest.raises(NotReady, match="shutting down"), plane.call("test", CLS, None):
            pass

    _with_core(two_models, body, load=False)


def test_unknown_names_and_versions_are_not_found(two_models: Path) -> None:
    async def body(core: Core) -> None:
        plane = core.plane
        for call in (
            lambda: plane.model_status("nope"),
            lambda: plane.model_ready(CLS, "7"),
            lambda: plane.model_metadata(CLS, "2"),
        ):
            with pytest.raises(ModelNotFound):
                call()
        assert plane.model_metadata(CLS).task == CLS and plane.model_metadata(CLS, "1").labels

    _with_core(two_models, body)


def test_a_failed_entry_makes_the_server_failed_only_when_nothing_else_is_ready(tmp_path: Path, store: Path) -> None:
    shutil.copytree(store / CLS, tmp_path / CLS)
    (tmp_path / CLS / "manifest.json").write_text("{}")

    async def body(core: Core) -> None:
        assert core.plane.readiness() == "failed"
        assert [(s.name, s.state) for s in core.plane.models()] == [(CLS, "failed")]
        with pytest.raises(NotReady, match="failed to load"):
            core.plane.model_metadata(CLS)

    _with_core(tmp_path, body)


def test_ready_requires_all_models(tmp_path: Path, store: Path) -> None:
    shutil.copytree(store / CLS, tmp_path / CLS)
    shutil.copytree(store / QA, tmp_path / QA)
    manifest = tmp_path / QA / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "task": "translation"}))

    async def either(core: Core) -> None:
        assert core.plane.readiness() == "ready"

    async def all_of_them(core: Core) -> None:
        assert core.plane.readiness() == "failed"

    _with_core(tmp_path, either)
    _with_core(tmp_path, all_of_them, ready_requires_all_models=True)
    shutil.rmtree(tmp_path / QA)
    _with_core(tmp_path, either, ready_requires_all_models=True)  # every entry ready


def test_calls_are_counted_and_labelled_with_a_known_model(two_models: Path) -> None:
    async def body(core: Core) -> None:
        plane = core.plane
        with pytest.raises(WrongTask), plane.call("t", CLS, QA):
            pass
        assert _requests(core, model=QA, task=CLS, transport="t", outcome="invalid") == 1
        with pytest.raises(ModelNotFound), plane.call("t", CLS, "client-chosen"):
            pass
        assert _requests(core, model="unknown", task=CLS, transport="t", outcome="invalid") == 1
        with plane.call("t", None, QA) as call:  # v2: the model decides the task
            assert (call.task, call.labels.task, call.labels.model) == (QA, QA, QA)
        assert _requests(core, model=QA, task=QA, transport="t", outcome="ok") == 1
        plane.record_refusal("t", None, CLS, "invalid", 0.0)
        plane.record_refusal("t", CLS, None, "invalid", 0.0)
        plane.record_refusal("t", None, "client-chosen", "invalid", 0.0)
        assert _requests(core, model=CLS, task=CLS, transport="t", outcome="invalid") == 1
        assert _requests(core, model="unknown", task=CLS, transport="t", outcome="invalid") == 2
        assert _requests(core, model="unknown", task="unknown", transport="t", outcome="invalid") == 1

    _with_core(two_models, body)


def test_a_call_cancelled_at_its_deadline_counts_as_expired_and_before_it_as_cancelled(two_models: Path) -> None:
    """gRPC cancels the handler when the client's deadline passes, racing the service's own
    DeadlineExceeded: whichever comes first, a request whose deadline passed expired."""

    async def body(core: Core) -> None:
        slow_inputs = [TextInput("word " * 100) for _ in range(8)]
        for deadline_in_s, outcome in ((0.0, "expired"), (60.0, "cancelled")):
            with pytest.raises(asyncio.CancelledError), core.plane.call("t", CLS, CLS) as call:
                task = asyncio.ensure_future(
                    call.classify(slow_inputs, ClassifyParams(), time.monotonic() + deadline_in_s)
                )
                await asyncio.sleep(0)  # the call has started and knows its deadline
                task.cancel()  # what grpc.aio does to the handler
                await task
            assert _requests(core, model=CLS, task=CLS, transport="t", outcome=outcome) == 1

    _with_core(two_models, body)


def test_early_refusal_only_when_every_reachable_queue_is_full(two_models: Path) -> None:
    async def body(core: Core) -> None:
        plane = core.plane
        assert plane.early_refusal("t", CLS, None) is None
        assert plane.early_refusal("t", None, CLS) is None
        assert plane.early_refusal("t", None, "nope") is None
        with core.registry.resolve(CLS, None).batcher.expecting(2):
            for refusal in (plane.early_refusal("t", CLS, None), plane.early_refusal("t", None, CLS)):
                assert isinstance(refusal, Overloaded) and refusal.retry_after_s > 0
                assert refusal.message == f"the queue of {CLS!r} is full"
            assert plane.early_refusal("t", QA, None) is None  # another task's queue has room
            plane.stop_accepting()
            assert plane.early_refusal("t", CLS, None) is None  # the normal path answers 503
        assert _requests(core, model=CLS, task=CLS, transport="t", outcome="overloaded") == 2

    _with_core(two_models, body, max_queued_rows=2)


def test_an_empty_store_knows_no_model(tmp_path: Path) -> None:
    async def body(core: Core) -> None:
        assert core.plane.readiness() == "failed"
        with pytest.raises(ModelNotFound, match="'nope' not found"):
            core.plane.model_status("nope")
        with pytest.raises(ModelNotFound, match="version '7' does not exist"):
            core.plane.model_status("nope", "7")

    _with_core(tmp_path, body)


def test_names_and_versions_from_clients_are_cut_short_in_messages(tmp_path: Path) -> None:
    async def body(core: Core) -> None:
        with pytest.raises(ModelNotFound) as name:
            core.plane.model_status("n" * 300)
        assert name.value.message == f"model {'n' * 100!r} not found"
        with pytest.raises(ModelNotFound) as version:
            core.plane.model_status("m", "7" * 300)
        assert version.value.message == f"model version {'7' * 20!r} does not exist (only '1')"

    _with_core(tmp_path, body)


def test_each_task_call_runs_its_model_within_the_deadline(store: Path) -> None:
    """Call.classify / tag_tokens / answer / run serve the resolved model with the request's
    inputs, parameters and deadline: a deadline already past ends in DeadlineExceeded."""
    requests: list[tuple[str, str, Any, Any]] = [
        (CLS, "classify", [TextInput("fine"), TextInput("bad")], ClassifyParams(top_k=None)),
        (NER, "tag_tokens", [TextInput("Ada lived in London")], TokenClassifyParams("simple")),
        (QA, "answer", [QAInput("Where?", "She lived in London.")], AnswerParams(top_k=2)),
        (QA, "run", [QAInput("Who?", "Ada did.")], AnswerParams()),
    ]

    async def body(core: Core) -> None:
        for task, method, inputs, params in requests:
            with core.plane.call("t", task, None) as call:
                result = await getattr(call, method)(inputs, params, core.plane.deadline_from(None))
            direct = await core.service.run(core.registry.resolve(None, task), inputs, params, None)
            assert result.model == task and result.results == direct.results, method
            with pytest.raises(DeadlineExceeded), core.plane.call("t", task, None) as call:
                await getattr(call, method)(inputs, params, time.monotonic() - 1.0)
        assert _requests(core, model=QA, task=QA, transport="t", outcome="expired") == 2
        exposition = core.plane.metrics_exposition().decode()
        assert 'squeezeserve_requests_total{model="token-classification",outcome="ok"' in exposition

    _with_core(store, body, max_batch_delay_ms=0.0)


def test_the_server_timeout_caps_the_callers(tmp_path: Path) -> None:
    async def body(core: Core) -> None:
        now = time.monotonic()
        assert 0.4 <= core.plane.deadline_from(0.5) - now <= 0.6  # a shorter one is the caller's to pick
        assert 2.9 <= core.plane.deadline_from(None) - now <= 3.1
        assert 2.9 <= core.plane.deadline_from(3600.0) - now <= 3.1

    _with_core(tmp_path, body, request_timeout_s=3.0)


def test_a_refusal_for_a_task_two_models_serve_names_both_and_no_one_model(tmp_path: Path, store: Path) -> None:
    for name in ("cls-a", "cls-b"):
        shutil.copytree(store / CLS, tmp_path / name)
        manifest = tmp_path / name / "manifest.json"
        manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "name": name}))

    async def body(core: Core) -> None:
        handles = [core.registry.resolve(name, None) for name in ("cls-a", "cls-b")]
        with handles[0].batcher.expecting(1):
            assert core.plane.early_refusal("t", CLS, None) is None  # cls-b has room
            with handles[1].batcher.expecting(1):
                refusal = core.plane.early_refusal("t", CLS, None)
        assert refusal is not None and refusal.message == "the queue of 'cls-a', 'cls-b' is full"
        assert _requests(core, model="unknown", task=CLS, transport="t", outcome="overloaded") == 1

    _with_core(tmp_path, body, max_queued_rows=1)
