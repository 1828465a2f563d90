"""REST-only request knobs that are not Settings."""

from __future__ import annotations

# Header through which a client may shorten (never lengthen) the server's request timeout.
TIMEOUT_HEADER = "X-Request-Timeout-S"
