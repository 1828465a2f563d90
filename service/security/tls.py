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


def _check_pem(cert_file: Path, key_file: Path, cert: bytes, key: bytes) -> None:
    """The mistakes OpenSSL only calls "PEM lib": files swapped, empty, not PEM, an encrypted key."""
    if b"-----BEGIN CERTIFICATE-----" not in cert:
        raise SecurityConfigError(f"SQZ_TLS_CERT_FILE {cert_file} holds no PEM certificate")
    if b"PRIVATE KEY-----" not in key:
        raise SecurityConfigError(f"SQZ_TLS_KEY_FILE {key_file} holds no PEM private key")
    if b"ENCRYPTED" in key:
        raise SecurityConfigError(f"SQZ_TLS_KEY_FILE {key_file} is encrypted; serve an unencrypted key")


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
    _check_pem(cert_file, key_file, cert, key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # The password callback keeps OpenSSL from prompting on a terminal for an encrypted key.
        context.load_cert_chain(cert_file, key_file, password=lambda: b"")
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            message = f"SQZ_TLS_KEY_FILE {key_file} is not the private key of SQZ_TLS_CERT_FILE {cert_file}"
        else:
            message = f"SQZ_TLS_CERT_FILE {cert_file} and SQZ_TLS_KEY_FILE {key_file} are unusable: {_ssl_reason(exc)}"
        raise SecurityConfigError(message) from None
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=ca_file)
        except ssl.SSLError as exc:
            raise SecurityConfigError(
                f"SQZ_TLS_CLIENT_CA_FILE {ca_file} holds no usable CA certificate: {_ssl_reason(exc)}"
            ) from None
    return TlsFiles(cert_file, key_file, ca_file, cert, key, ca)
