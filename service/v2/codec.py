"""KServe v2 inference and metadata on top of InferenceService (both transports call this)."""

from __future__ import annotations

from typing import Any

from service.errors import InvalidInput
from service.pipeline import InferenceService
from service.registry import ModelHandle
from service.v2 import tasks
from service.v2.types import MODEL_VERSION, PLATFORM, InferRequest, InferResponse, ModelMetadata, Tensor


def model_metadata(handle: ModelHandle) -> ModelMetadata:
    m = handle.manifest
    properties = {
        "task": m.task,
        "max_seq_len": str(m.max_seq_len),
        "precision": m.precision,
        "trained": str(m.trained).lower(),
        "labels": ",".join(m.id2label[i] for i in sorted(m.id2label)),
    }
    return ModelMetadata(
        name=handle.name,
        versions=[MODEL_VERSION],
        platform=PLATFORM,
        inputs=list(tasks.INPUTS[handle.task]),
        outputs=list(tasks.OUTPUTS[handle.task]),
        properties=properties,
    )


def check_version(version: str) -> None:
    if version not in ("", MODEL_VERSION):
        raise InvalidInput(f"model version {version!r} does not exist (only {MODEL_VERSION!r})")


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


def _columns(handle: ModelHandle, request: InferRequest) -> dict[str, list[str]]:
    known = {meta.name for meta in tasks.INPUTS[handle.task]}
    columns: dict[str, list[str]] = {}
    for tensor in request.inputs:
        if tensor.name not in known:
            raise InvalidInput(f"unknown input {tensor.name!r}; model {handle.name!r} takes {sorted(known)}")
        if tensor.name in columns:
            raise InvalidInput(f"input {tensor.name!r} given twice")
        columns[tensor.name] = _column(tensor)
    required = [m.name for m in tasks.INPUTS[handle.task] if m.name != "text_pair"]
    missing = [name for name in required if name not in columns]
    if missing:
        raise InvalidInput(f"missing input(s) {missing} for model {handle.name!r}")
    if len({len(c) for c in columns.values()}) > 1:
        raise InvalidInput("all inputs must have the same batch size")
    return columns


async def _results(service: InferenceService, handle: ModelHandle, request: InferRequest, deadline: float) -> Any:
    columns = _columns(handle, request)
    p = request.parameters
    if handle.task == "sequence-classification":
        labels = await service.classify(handle.name, tasks.text_inputs(columns), tasks.classify_params(p), deadline)
        return tasks.label_tensors(labels.results), labels
    if handle.task == "token-classification":
        entities = await service.tag_tokens(handle.name, tasks.text_inputs(columns), tasks.token_params(p), deadline)
        return tasks.entity_tensors(entities.results), entities
    answers = await service.answer(handle.name, tasks.qa_inputs(columns), tasks.answer_params(p), deadline)
    return tasks.answer_tensors(answers.results), answers


async def infer(
    service: InferenceService, model: str, version: str, request: InferRequest, deadline: float
) -> tuple[InferResponse, Any]:
    """Run a v2 request; returns the response and the ServiceResult (for timings)."""
    check_version(version)
    handle = service.registry.get(model)
    outputs, result = await _results(service, handle, request, deadline)
    if request.outputs is not None:
        by_name = {t.name: t for t in outputs}
        unknown = [n for n in request.outputs if n not in by_name]
        if unknown:
            raise InvalidInput(f"unknown output(s) {unknown}; model {model!r} produces {sorted(by_name)}")
        outputs = [by_name[n] for n in request.outputs]
    return InferResponse(handle.name, MODEL_VERSION, request.id, outputs), result
