"""`squeezeserve serve`: build Settings from env + flags, configure logging, run the server."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from pydantic import ValidationError

from service.config import Settings

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
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    from service.server import serve

    return asyncio.run(serve(settings))
