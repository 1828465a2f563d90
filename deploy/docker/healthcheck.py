"""Container health check: exit 0 when GET /readyz answers 200 (slim images have no curl).

`squeezeserve-healthcheck /healthz` checks liveness instead (for a Kubernetes exec liveness probe).

Reads the server's own settings from the environment, so it keeps working when they change:
- SQZ_TLS_CERT_FILE set: https. The server certificate is verified against
  SQZ_HEALTHCHECK_CA_FILE when given; otherwise not (this is loopback, to our own process).
- SQZ_TLS_CLIENT_CA_FILE set (mTLS): a client certificate is needed too:
  SQZ_HEALTHCHECK_CERT_FILE and SQZ_HEALTHCHECK_KEY_FILE (one signed by that CA).
- SQZ_API_KEYS_FILE set and "health" not in SQZ_AUTH_EXEMPT: the first key of that file is sent.
"""

import os
import ssl
import sys
import urllib.request

env = os.environ
port = env.get("SQZ_HTTP_PORT", "8000")
context = None
scheme = "http"
if env.get("SQZ_TLS_CERT_FILE"):
    scheme = "https"
    context = ssl.create_default_context(cafile=env.get("SQZ_HEALTHCHECK_CA_FILE") or None)
    if not env.get("SQZ_HEALTHCHECK_CA_FILE"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if env.get("SQZ_HEALTHCHECK_CERT_FILE"):
        context.load_cert_chain(env["SQZ_HEALTHCHECK_CERT_FILE"], env.get("SQZ_HEALTHCHECK_KEY_FILE") or None)
headers = {}
exempt = env.get("SQZ_AUTH_EXEMPT", "health,metrics,docs").split(",")
if env.get("SQZ_API_KEYS_FILE") and "health" not in [e.strip() for e in exempt]:
    with open(env["SQZ_API_KEYS_FILE"], encoding="utf-8") as keys:
        key = next(k.strip() for k in keys if k.strip() and not k.strip().startswith("#"))
    headers["Authorization"] = f"Bearer {key}"
# "localhost", not 127.0.0.1: certificates usually name the host, and the check may verify it.
path = sys.argv[1] if len(sys.argv) > 1 else "/readyz"
request = urllib.request.Request(f"{scheme}://localhost:{port}{path}", headers=headers)
try:
    with urllib.request.urlopen(request, timeout=3, context=context) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception as exc:  # noqa: BLE001 - any failure (503 while loading/draining, refused) is "unhealthy"
    print(f"not ready: {exc}", file=sys.stderr)
    sys.exit(1)
