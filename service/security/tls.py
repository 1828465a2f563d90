"""TlsFiles: the server certificate, key and optional client CA, read and checked once at startup.

Both listeners use the same files: uvicorn is given the paths, grpc the bytes read here. Every
problem an operator can make (a missing or unreadable file, a key that is not the certificate's,
a CA file without certificates) is a SecurityConfigError with one line naming the setting.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from service.config import Settings
from service.security.errors import SecurityConfigError


@dataclass(frozen=True)
class TlsFiles:
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None
    cert_chain: bytes
    private_key: bytes
    client_ca: bytes | None

    @property
    def requires_client_cert(self) -> bool:
        return self.client_ca is not None


def _read(setting: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SecurityConfigError(f"cannot read {setting} {path}: {exc.strerror or exc}") from None


def _ssl_reason(exc: ssl.SSLError) -> str:
    return str(exc.reason or exc).replace("_", " ").lower()


def load_tls(settings: Settings) -> TlsFiles | None:
    """None when TLS is off; raises SecurityConfigError when the files cannot be served."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    cert_file, key_file, ca_file = settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file
    cert = _read("SQZ_TLS_CERT_FILE", cert_file)
    key = _read("SQZ_TLS_KEY_FILE", key_file)
    ca = _read("SQZ_TLS_CLIENT_CA_FILE", ca_file) if ca_file is not None else None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert_file, key_file)
    except ssl.SSLError as exc:
        raise SecurityConfigError(
            f"SQZ_TLS_CERT_FILE {cert_file} and SQZ_TLS_KEY_FILE {key_file} cannot be served together: "
            f"{_ssl_reason(exc)}"
        ) from None
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=ca_file)
        except ssl.SSLError as exc:
            raise SecurityConfigError(
                f"SQZ_TLS_CLIENT_CA_FILE {ca_file} holds no usable CA certificate: {_ssl_reason(exc)}"
            ) from None
    return TlsFiles(cert_file, key_file, ca_file, cert, key, ca)
