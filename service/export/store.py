"""Atomic writes into the model store: build in a temporary sibling directory, then rename.

Entries are made readable by every user (directories 0755, files 0644) whatever the umask and
the 0700 of the temporary directory: the server usually runs as another user than the exporter
(the image's uid 10001, a Kubernetes pod reading a volume someone else filled).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from service.export.errors import ExportError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name) or name in {".", ".."}:
        raise ExportError(f"invalid model name {name!r}: use 1-64 letters, digits, '.', '_' or '-'")
    return name


DIR_MODE = 0o755
FILE_MODE = 0o644


def make_world_readable(root: Path) -> None:
    """root and everything below it: directories 0755, files 0644 (no execute bits on data)."""
    root.chmod(DIR_MODE)
    for path in root.rglob("*"):
        if path.is_symlink():
            continue
        path.chmod(DIR_MODE if path.is_dir() else FILE_MODE)


def prepare_store(store: Path) -> Path:
    """Create the store if needed and prove it is writable before any slow work starts."""
    try:
        if not store.exists():
            store.mkdir(parents=True)
            store.chmod(DIR_MODE)  # a store we create must be traversable by the server's user
        with tempfile.NamedTemporaryFile(dir=store, prefix=".probe-"):
            pass
    except OSError as exc:
        raise ExportError(f"model store {store} is not writable: {exc.strerror or exc}") from exc
    return store


@contextmanager
def staged_model_dir(store: Path, name: str, replace: bool) -> Iterator[Path]:
    """Yield an empty staging dir; on success it becomes store/name, on any failure it is removed.

    Readers never see a half-written model: the final step is a rename within one filesystem.
    """
    target = store / check_name(name)
    if target.exists() and not replace:
        raise ExportError(f"{target} already exists; pass --force to replace it")
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.staging-", dir=store))
    try:
        yield staging
        make_world_readable(staging)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{name}.old-", dir=store))
            os.replace(target, old / name)
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
