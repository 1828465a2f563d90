"""Trailing metadata the gRPC transport sends: per-request timings and overload back-off hints."""

from __future__ import annotations

import math

from service.pipeline import Timings

Metadata = tuple[tuple[str, str], ...]


def timing_metadata(timings: Timings) -> Metadata:
    """Where the request's time went, in milliseconds (queue and inference: the slowest row's)."""
    return (
        ("x-timing-tokenize-ms", f"{timings.tokenize_s * 1000:.3f}"),
        ("x-timing-queue-ms", f"{timings.queue_s * 1000:.3f}"),
        ("x-timing-inference-ms", f"{timings.inference_s * 1000:.3f}"),
        ("x-timing-total-ms", f"{timings.total_s * 1000:.3f}"),
    )


def retry_metadata(retry_after_s: float) -> Metadata:
    """`retry-after` in whole seconds (like HTTP's header) and gRPC's own pushback in milliseconds."""
    return (
        ("retry-after", str(max(1, math.ceil(retry_after_s)))),
        ("grpc-retry-pushback-ms", str(max(1, round(retry_after_s * 1000)))),
    )
