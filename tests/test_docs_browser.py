"""/docs and /redoc render in a real browser with no network beyond the server itself.

Headless Chromium (Debian's `chromium`) loads each page from the test server while every other
host name resolves to nothing, as on an air-gapped host. The rendered DOM must list the API's
operations, and Chromium's own network log must show that the page asked only the server. With
FastAPI's default pages (CDN scripts) the DOM stays empty and both checks fail.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.harness import RunningServer

# Flags for a root, display-less, network-less machine: no sandbox (root), no GPU, and none of
# the browser's own background traffic (updates, sync) that would blur the network log.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Only 127.0.0.1 resolves: a page that needs a CDN or web fonts renders without them.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    # Run the page's scripts to completion (virtual time) before dumping the DOM.
    "--virtual-time-budget=15000",
)


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail("chromium is not installed (.ci/run installs Debian's chromium)")
    pytest.skip("no chromium on this machine: apt-get install chromium")


def _render(url: str, workdir: Path) -> tuple[str, list[dict[str, str]]]:
    """The DOM after the page's scripts ran, and every request the browser started."""
    net_log = workdir / "net-log.json"
    result = subprocess.run(
        [
            _chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={workdir / 'profile'}",
            f"--log-net-log={net_log}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    log = json.loads(net_log.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    requests = [e["params"] for e in log["events"] if e["type"] == start_job and "url" in e.get("params", {})]
    return result.stdout, requests


def _page_requests(requests: list[dict[str, str]], origin: str, page: str) -> list[str]:
    """URLs the page asked for: its own navigation and whatever it initiated (not the browser's own)."""
    return [r["url"] for r in requests if r.get("initiator") == origin or r["url"] == page]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_page_renders_offline_and_asks_only_the_server(page: str, server: RunningServer, tmp_path: Path) -> None:
    spec = httpx.get(server.url + "/openapi.json", timeout=10).json()
    dom, requests = _render(server.url + page, tmp_path)

    asked = _page_requests(requests, server.url, server.url + page)
    assert server.url + "/openapi.json" in asked, asked  # the scripts ran and fetched the spec
    assert all(url.startswith(server.url + "/") for url in asked), asked

    operations = [(path, op["operationId"]) for path, ops in spec["paths"].items() for op in ops.values()]
    assert len(operations) >= 15
    for path, operation_id in operations:
        if page == "/docs":  # Swagger UI: one block per operation, tagged with its path
            assert f'data-path="{path}"' in dom, path
        else:  # ReDoc: one anchor per operation id
            assert f"operation/{operation_id}" in dom, operation_id


def test_docs_assets_are_served_by_the_server(server: RunningServer) -> None:
    """The pages reference only this server (what a proxy or an air-gapped host needs to know)."""
    for page in ("/docs", "/redoc"):
        html = httpx.get(server.url + page, timeout=10).text
        assert "http://" not in html and "https://" not in html, html
    js = httpx.get(server.url + "/docs-assets/redoc.standalone.js", timeout=10)
    assert js.status_code == 200 and len(js.content) > 100_000


def test_the_readme_call_it_commands_work_as_written(server: RunningServer) -> None:
    """The first commands a user copies: each answers 200 with results (a 415 here once slipped by)."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("<!-- call-it:begin -->", 1)[1].split("<!-- call-it:end -->", 1)[0]
    lines = [line for line in block.splitlines() if line.startswith("curl ")]
    assert len(lines) == 3
    host = server.url.removeprefix("http://")
    for line in lines:
        argv = [arg.replace("localhost:8000", host) for arg in shlex.split(line)]
        result = subprocess.run([*argv, "--fail-with-body", "--max-time", "30"], capture_output=True, text=True)
        assert result.returncode == 0, (line, result.stdout, result.stderr)
        assert json.loads(result.stdout)["results"], result.stdout
