"""KServe v2 inference and metadata on top of the DataPlane's calls (both transports use this)."""

from __future__ import annotations

from typing import Any

from service.dataplane import Call
from service.errors import InvalidInput
from service.lifecycle import ModelStatus
from service.v2 import tasks
from service.v2.types import MODEL_VERSION, PLATFORM, InferRequest, InferResponse, ModelMetadata, Tensor


def model_metadata(status: ModelStatus) -> ModelMetadata:
    properties = {
        "task": status.task,
        "max_seq_len": str(status.max_seq_len),
        "precision": status.precision,
        "trained": str(status.trained).lower(),
        "labels": ",".join(status.labels),
    }
    return ModelMetadata(
        name=status.name,
        versions=[MODEL_VERSION],
        platform=PLATFORM,
        inputs=list(tasks.V2_TASKS[status.task].inputs),
        outputs=list(tasks.V2_TASKS[status.task].outputs),
        properties=properties,
    )


def _column(tensor: Tensor) -> list[str]:
    if tensor.datatype != "BYTES":
        raise InvalidInput(f"input {tensor.name!r} must be BYTES, got {tensor.datatype}")
    if len(tensor.shape) not in (1, 2) or (len(tensor.shape) == 2 and tensor.shape[1] != 1):
        raise InvalidInput(f"input {tensor.name!r} must have shape [N] or [N, 1], got {list(tensor.shape)}")
    if tensor.shape[0] != len(tensor.data):
        raise InvalidInput(f"input {tensor.name!r} has shape {list(tensor.shape)} but {len(tensor.data)} elements")
    values = []
    for item in tensor.data:
        if isinstance(item, bytes):
            try:
                item = item.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidInput(f"input {tensor.name!r} is not valid UTF-8") from exc
        if not isinstance(item, str):
            raise InvalidInput(f"input {tensor.name!r} must hold strings")
        values.append(item)
    return values


def _columns(call: Call, request: InferRequest) -> dict[str, list[str]]:
    known = {meta.name for meta in tasks.V2_TASKS[call.task].inputs}
    columns: dict[str, list[str]] = {}
    for tensor in request.inputs:
        if tensor.name not in known:
            raise InvalidInput(f"unknown input {tensor.name!r}; model {call.model!r} takes {sorted(known)}")
        if tensor.name in columns:
            raise InvalidInput(f"input {tensor.name!r} given twice")
        columns[tensor.name] = _column(tensor)
    required = [m.name for m in tasks.V2_TASKS[call.task].inputs if m.name != "text_pair"]
    missing = [name for name in required if name not in columns]
    if missing:
        raise InvalidInput(f"missing input(s) {missing} for model {call.model!r}")
    if len({len(c) for c in columns.values()}) > 1:
        raise InvalidInput("all inputs must have the same batch size")
    return columns


async def _results(call: Call, request: InferRequest, deadline: float) -> Any:
    mapping = tasks.V2_TASKS[call.task]
    inputs, params = mapping.domain_inputs(_columns(call, request)), mapping.params(request.parameters)
    result = await call.run(inputs, params, deadline)
    return mapping.tensors(result.results), result


async def infer(call: Call, request: InferRequest, deadline: float) -> tuple[InferResponse, Any]:
    """Run a v2 request on its call's model; returns the response and the ServiceResult (for timings)."""
    outputs, result = await _results(call, request, deadline)
    if request.outputs is not None:
        by_name = {t.name: t for t in outputs}
        unknown = [n for n in request.outputs if n not in by_name]
        if unknown:
            raise InvalidInput(f"unknown output(s) {unknown}; model {call.model!r} produces {sorted(by_name)}")
        outputs = [by_name[n] for n in request.outputs]
    return InferResponse(call.model, MODEL_VERSION, request.id, outputs), result
