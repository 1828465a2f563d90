"""Checkpoint -> ONNX -> int8 -> model_store. Imports torch/transformers lazily; never used by the server."""
