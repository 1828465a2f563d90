"""The naive REST app's gRPC twin: grpcio's plain thread-pool server, no batching at all.

    SQZ_NAIVE_MODEL_DIR=model_store/demo-classify SQZ_NAIVE_THREADS=2 \
        python -m loadtest.naive_grpc --port N

squeezeserve.v1.Inference (Classify, TokenClassify, Answer) from squeezeserve's generated stubs,
on grpcio's synchronous `grpc.server(ThreadPoolExecutor(40))` (40 workers: FastAPI's default
thread pool, so both naive transports run as many requests at once on the one session). Each RPC
converts with squeezeserve's own converters and calls loadtest/naive_model.py: the same
per-request code as loadtest/naive_app.py (one `session.run` per request). An RPC for another task
than the entry's is INVALID_ARGUMENT, as squeezeserve answers it. Used by loadtest.vs.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import grpc

from loadtest.naive_model import NaiveModel, from_env
from service.errors import ERROR_TABLE, ServiceError
from service.grpc import converters as cv
from service.grpc.generated.squeezeserve.v1 import squeezeserve_pb2 as pb
from service.grpc.generated.squeezeserve.v1 import squeezeserve_pb2_grpc as pb_grpc

WORKERS = 40


class NaiveInference(pb_grpc.InferenceServicer):
    def __init__(self, model: NaiveModel) -> None:
        self.model = model

    def Classify(self, request: pb.ClassifyRequest, context: grpc.ServicerContext) -> pb.ClassifyResponse:
        with status_from_errors(context):
            inputs, params = cv.text_inputs_from_pb(request.inputs), cv.classify_params_from_pb(request.parameters)
            results = self.model.infer("sequence-classification", inputs, params)
            return pb.ClassifyResponse(model=self.model.name, results=cv.label_scores_to_pb(results))

    def TokenClassify(
        self, request: pb.TokenClassifyRequest, context: grpc.ServicerContext
    ) -> pb.TokenClassifyResponse:
        with status_from_errors(context):
            inputs, params = cv.token_inputs_from_pb(request.inputs), cv.token_params_from_pb(request.parameters)
            results = self.model.infer("token-classification", inputs, params)
            return pb.TokenClassifyResponse(model=self.model.name, results=cv.entities_to_pb(results))

    def Answer(self, request: pb.AnswerRequest, context: grpc.ServicerContext) -> pb.AnswerResponse:
        with status_from_errors(context):
            inputs, params = cv.qa_inputs_from_pb(request.inputs), cv.answer_params_from_pb(request.parameters)
            results = self.model.infer("question-answering", inputs, params)
            return pb.AnswerResponse(model=self.model.name, results=cv.answers_to_pb(results))


@contextmanager
def status_from_errors(context: grpc.ServicerContext) -> Iterator[None]:
    """A ServiceError ends the RPC with its status from squeezeserve's error table."""
    try:
        yield
    except ServiceError as exc:
        context.abort(grpc.StatusCode[ERROR_TABLE[exc.kind].grpc], exc.message)


def serve(model: NaiveModel, port: int) -> tuple[grpc.Server, int]:
    """Started on 127.0.0.1:port (0: a free port); returns the server and its port."""
    server = grpc.server(ThreadPoolExecutor(WORKERS))
    pb_grpc.add_InferenceServicer_to_server(NaiveInference(model), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server, bound


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    server, _ = serve(from_env(), parser.parse_args().port)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
