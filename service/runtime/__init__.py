"""ONNX Runtime sessions: options, declared inputs, warm-up."""
