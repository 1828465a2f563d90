"""Transport-neutral security pieces: API keys (keys.py) and TLS material (tls.py)."""

from service.security.errors import SecurityConfigError
from service.security.keys import ApiKeys, bearer_token, load_api_keys
from service.security.tls import TlsFiles, load_tls

__all__ = ["ApiKeys", "SecurityConfigError", "TlsFiles", "bearer_token", "load_api_keys", "load_tls"]
