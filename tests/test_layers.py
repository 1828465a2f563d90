"""Imports go downward (docs/ARCHITECTURE.md): checked on the source, every import statement,
function-level ones included, so a shortcut through a layer fails here and not in review."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICE = Path(__file__).resolve().parent.parent / "service"
TRANSPORT_LIBRARIES = ("fastapi", "starlette", "uvicorn", "grpc", "grpc_health", "grpc_reflection", "service.grpc")
BELOW_THE_FRONT_DOOR = (
    "batching", "tasks", "runtime", "pipeline.py", "inline.py", "registry.py", "tokenization.py", "lifecycle.py",
    "store.py", "manifest.py", "errors.py", "config.py", "metrics.py", "dataplane.py",
)  # fmt: skip


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def sources(*parts: str) -> list[Path]:
    found: list[Path] = []
    for part in parts:
        path = SERVICE / part
        found += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return found


def offending(paths: list[Path], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    hits = {}
    for path in paths:
        bad = sorted(m for m in imported_modules(path) if any(m == f or m.startswith(f + ".") for f in forbidden))
        if bad:
            hits[str(path.relative_to(SERVICE.parent))] = bad
    return hits


def test_the_batcher_knows_rows_not_tasks_pipeline_or_transports() -> None:
    forbidden = ("service.tasks", "service.pipeline", "service.registry", "service.dataplane", *TRANSPORT_LIBRARIES)
    assert offending(sources("batching"), forbidden) == {}


def test_the_transports_reach_the_models_only_through_the_dataplane() -> None:
    forbidden = ("service.registry", "service.core", "service.server", "service.batching")
    assert offending(sources("api", "grpc", "v2"), forbidden) == {}


@pytest.mark.parametrize("part", BELOW_THE_FRONT_DOOR)
def test_nothing_below_the_transports_imports_a_web_or_rpc_framework(part: str) -> None:
    assert offending(sources(part), TRANSPORT_LIBRARIES) == {}


def test_the_check_sees_a_function_level_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from service.tasks.base import Prepared\n    import grpc\n")
    assert imported_modules(module) >= {"service.tasks.base", "grpc"}
