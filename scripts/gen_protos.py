"""Generate the gRPC/protobuf Python modules from proto/ into service/grpc/generated/ (never hand-edit).

Usage: python scripts/gen_protos.py [OUT_DIR]   (default: service/grpc/generated)
The proto files are mapped under the Python package path so generated imports resolve as
`service.grpc.generated...` without rewriting; the wire names come from each file's `package`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_PATH = "service/grpc/generated"
PROTOS = ("inference/grpc_service.proto", "squeezeserve/v1/squeezeserve.proto")


def generate(out_root: Path) -> None:
    out_root.mkdir(parents=True, exist_ok=True)
    include = Path(protoc.__file__).parent / "_proto"
    for proto in PROTOS:
        args = [
            "protoc",
            f"-I{PACKAGE_PATH}={ROOT / 'proto'}",
            f"-I{include}",
            f"--python_out={out_root}",
            f"--pyi_out={out_root}",
            f"--grpc_python_out={out_root}",
            f"{PACKAGE_PATH}/{proto}",
        ]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed for {proto}")
    package = out_root / PACKAGE_PATH
    # Only the generated package folders: never __pycache__ (or anything else Python leaves there).
    folders = [p for p in package.rglob("*") if p.is_dir() and p.name != "__pycache__"]
    for directory in [package, *folders]:
        (directory / "__init__.py").touch()


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT
    generate(target)
