"""ApiKeys: the accepted API keys, read from a file (one per line), re-read on request or on change.

Keys are kept only as SHA-256 digests and compared with hmac.compare_digest against every key
(no early exit), so neither the key nor how much of it matched shows in the timing. A reload
that fails (file gone, unreadable, no keys) keeps the previous keys and logs why; at startup the
same failure is a SecurityConfigError. Nothing here ever logs a key.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time
from pathlib import Path

from service.config import Settings
from service.security.errors import SecurityConfigError

log = logging.getLogger(__name__)

CHANGE_CHECK_INTERVAL_S = 1.0  # how often a request may stat the file to notice a rotation
BEARER = "bearer"


def bearer_token(authorization: str | None) -> str | None:
    """The credentials of an `Authorization: Bearer <token>` value (scheme case-insensitive), else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == BEARER and token else None


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _file_stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)  # follows symlinks: a Kubernetes secret swaps its ..data link
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def read_keys(path: Path) -> frozenset[bytes]:
    """The digests of the keys in `path`: one per line; blank lines and # comments are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise SecurityConfigError(f"cannot read SQZ_API_KEYS_FILE {path}: {reason}") from None
    keys = [line.strip() for line in text.splitlines()]
    keys = [k for k in keys if k and not k.startswith("#")]
    if not keys:
        raise SecurityConfigError(f"SQZ_API_KEYS_FILE {path} holds no keys (one per line)")
    return frozenset(_digest(k) for k in keys)


class ApiKeys:
    def __init__(self, path: Path, check_interval_s: float = CHANGE_CHECK_INTERVAL_S) -> None:
        """Reads the file now; raises SecurityConfigError when it cannot be used."""
        self.path = path
        self._interval_s = check_interval_s
        self._stamp = _file_stamp(path)
        self._digests = read_keys(path)
        self._checked_at = time.monotonic()

    @property
    def count(self) -> int:
        return len(self._digests)

    def reload(self) -> bool:
        """Re-read the file (SIGHUP); on failure keep the current keys. True when the keys were replaced."""
        self._stamp = _file_stamp(self.path)
        try:
            digests = read_keys(self.path)
        except SecurityConfigError as exc:
            log.warning("%s; keeping the %d key(s) loaded before", exc, len(self._digests))
            return False
        self._digests = digests
        log.info("API keys reloaded from %s: %d key(s)", self.path, len(digests))
        return True

    def reload_if_changed(self) -> None:
        """Cheap enough per request: stats the file at most once per check interval."""
        now = time.monotonic()
        if now - self._checked_at < self._interval_s:
            return
        self._checked_at = now
        if _file_stamp(self.path) != self._stamp:
            self.reload()

    def verify(self, authorization: str | None) -> str | None:
        """None when the Authorization value carries an accepted key, else why not: 'missing' | 'invalid'."""
        self.reload_if_changed()
        token = bearer_token(authorization)
        if token is None:
            return "missing" if not authorization else "invalid"
        presented = _digest(token)
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(presented, digest)
        return None if matched else "invalid"


def load_api_keys(settings: Settings) -> ApiKeys | None:
    """None when API keys are off; raises SecurityConfigError when the file cannot be used."""
    return None if settings.api_keys_file is None else ApiKeys(settings.api_keys_file)
