"""squeezeserve.v1.Inference: the task API (same requests and results as REST /v1)."""

from __future__ import annotations

from typing import TypeAlias

import grpc

from service.dataplane import DataPlane
from service.grpc import converters as cv
from service.grpc.calls import inference_call, request_deadline, send_timings
from service.grpc.generated.squeezeserve.v1 import squeezeserve_pb2 as pb
from service.grpc.generated.squeezeserve.v1 import squeezeserve_pb2_grpc as pb_grpc

Context: TypeAlias = grpc.aio.ServicerContext


class InferenceServicer(pb_grpc.InferenceServicer):
    """Each RPC converts in, calls the DataPlane, converts out; errors map in service.grpc.errors."""

    def __init__(self, plane: DataPlane) -> None:
        self._plane = plane

    async def Classify(self, request: pb.ClassifyRequest, context: Context) -> pb.ClassifyResponse:
        async with inference_call(
            self._plane, context, "sequence-classification", cv.model_from_pb(request.model)
        ) as call:
            inputs = cv.text_inputs_from_pb(request.inputs)
            params = cv.classify_params_from_pb(request.parameters)
            result = await call.classify(inputs, params, request_deadline(self._plane, context))
            send_timings(context, result.timings)
            return pb.ClassifyResponse(model=result.model, results=cv.label_scores_to_pb(result.results))

    async def TokenClassify(self, request: pb.TokenClassifyRequest, context: Context) -> pb.TokenClassifyResponse:
        async with inference_call(
            self._plane, context, "token-classification", cv.model_from_pb(request.model)
        ) as call:
            inputs = cv.token_inputs_from_pb(request.inputs)
            params = cv.token_params_from_pb(request.parameters)
            result = await call.tag_tokens(inputs, params, request_deadline(self._plane, context))
            send_timings(context, result.timings)
            return pb.TokenClassifyResponse(model=result.model, results=cv.entities_to_pb(result.results))

    async def Answer(self, request: pb.AnswerRequest, context: Context) -> pb.AnswerResponse:
        async with inference_call(self._plane, context, "question-answering", cv.model_from_pb(request.model)) as call:
            inputs = cv.qa_inputs_from_pb(request.inputs)
            params = cv.answer_params_from_pb(request.parameters)
            result = await call.answer(inputs, params, request_deadline(self._plane, context))
            send_timings(context, result.timings)
            return pb.AnswerResponse(model=result.model, results=cv.answers_to_pb(result.results))

    async def ListModels(self, request: pb.ListModelsRequest, context: Context) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(models=cv.model_infos_to_pb(self._plane.models()))
