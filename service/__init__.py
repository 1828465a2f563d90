"""squeezeserve: CPU inference service for SqueezeBERT (int8 ONNX Runtime, dynamic batching)."""

__version__ = "0.1.0"
