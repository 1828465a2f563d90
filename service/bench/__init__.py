"""Benchmarks that write reports (never timed assertions in tests)."""
