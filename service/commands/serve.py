"""`squeezeserve serve`: build Settings from env + flags, configure logging, run the server."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from pydantic import ValidationError

from service.config import Settings
from service.logs import configure_logging

FLAG_TO_SETTING = {"store": "store_dir", "host": "host", "http_port": "http_port", "grpc_port": "grpc_port"}


def run_serve(args: argparse.Namespace) -> int:
    overrides = {
        field: getattr(args, flag) for flag, field in FLAG_TO_SETTING.items() if getattr(args, flag) is not None
    }
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        print(f"squeezeserve serve: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    if settings.log_format == "json":
        # gRPC's C core writes its own text lines to stderr, bypassing Python logging; in JSON mode
        # they would break the one-object-per-line stream, so they are off unless asked for.
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    from service.server import serve

    return asyncio.run(serve(settings))
