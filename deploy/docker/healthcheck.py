"""Container health check: exit 0 when GET /readyz answers 200 (slim images have no curl)."""

import os
import sys
import urllib.request

port = os.environ.get("SQZ_HTTP_PORT", "8000")
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=3) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception as exc:  # noqa: BLE001 - any failure (503 while loading/draining, refused) is "unhealthy"
    print(f"not ready: {exc}", file=sys.stderr)
    sys.exit(1)
