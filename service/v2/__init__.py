"""KServe v2 / Open Inference Protocol mapping, shared by the REST and gRPC transports."""
