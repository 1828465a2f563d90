"""Schemathesis against the running server: no 5xx, no undocumented status, bodies match the schema.

The schema is built at import (parametrization needs it at collection; the OpenAPI document does
not depend on loaded models) and checked to be the one the live server serves; every generated
case is then sent over HTTP to the real server. (schemathesis' lazy `from_fixture` loader does not
work with pytest 9.)
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from service.api import create_app
from service.api.limits import TIMEOUT_HEADER
from service.config import Settings
from service.core import build_core
from tests.harness import RunningServer

# Per operation: 30 in the suite (every documented branch, bounded for 2 cores); CI's separate fuzz
# step sets SQZ_FUZZ_EXAMPLES for a longer run with a fixed seed (see .ci/run).
MAX_EXAMPLES = int(os.environ.get("SQZ_FUZZ_EXAMPLES", "30"))
OPENAPI = create_app(build_core(Settings.model_validate({"store_dir": Path("/nonexistent")})).plane).openapi()
CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {"max-examples": MAX_EXAMPLES},
        "phases": {"stateful": {"enabled": False}},
        # Off: the schema cannot express every semantic rule (blank text, too many tokens, the
        # configurable input count), so schema-valid requests may rightly get 422. Everything else
        # (5xx, undocumented statuses, body/header/content-type conformance, rejecting invalid data) is on.
        "checks": {"positive_data_acceptance": {"enabled": False}},
    }
)
schema = schemathesis.openapi.from_dict(OPENAPI, config=CONFIG)


SENT: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def report_case_count() -> Iterator[None]:
    started = time.monotonic()
    yield
    print(f"\nschemathesis: {len(SENT)} cases over {len(set(SENT))} operations in {time.monotonic() - started:.0f} s")


def test_the_server_serves_this_schema(server: RunningServer) -> None:
    with server.client() as client:
        assert client.get("/openapi.json").json() == OPENAPI


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case, server: RunningServer) -> None:
    # A client deadline of 5e-324 s ends, correctly, in 504, which the 5xx check would count;
    # the header's own validation and the 504 are tested in test_rest_errors.
    if case.headers:
        case.headers.pop(TIMEOUT_HEADER, None)
    SENT.append(case.operation.label)
    case.call_and_validate(base_url=server.url, timeout=30)
