"""Dynamic batching of encoded rows across requests, one batcher per model."""
