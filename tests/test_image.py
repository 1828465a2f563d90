"""The Docker image, built from this checkout and run the way Kubernetes runs it (deploy/k8s/).

Built with the README's own `docker build` line (plus a small store from the build context and
this machine's stand-in base image) and started with the README's `docker run` line: read-only
root filesystem, every capability dropped, no new privileges, 2 CPUs, the image's own user. Only
the port mapping differs: engines without bridge networking (this one) use `--network host`, so
the server is told its ports instead.

Needs a reachable Docker engine (`../shared/tools/docker-engine` starts one, as root, and prints
SQZ_DOCKER and SQZ_TEST_PYTHON_IMAGE). Without one every test here skips with that reason; when
SQZ_DOCKER is set (CI) an unreachable engine is a failure, not a skip.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from loadtest.server import ServerProcess, free_port
from service.grpc.generated.inference import grpc_service_pb2 as ipb
from service.grpc.generated.inference import grpc_service_pb2_grpc
from service.grpc.generated.squeezeserve.v1 import squeezeserve_pb2 as pb
from service.grpc.generated.squeezeserve.v1 import squeezeserve_pb2_grpc
from tests.conftest import TINY_MAX_PROB_DELTA

pytestmark = pytest.mark.image

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
# Inside the build context (the checkout), ignored by git; STORE_FROM_CONTEXT points at it.
CONTEXT_STORE = ".image-test-store"
# The figures of the last run (build, time to ready, sizes, drain counts): the summary shows them.
REPORT = ".image-test-report.json"
READY_BOUND_S = 60.0
# What the image adds over its base, store excluded: Python packages of the server's install set
# (onnxruntime ~80 MB, numpy ~75 MB, grpcio ~20 MB, tokenizers, pydantic, ...). README explains.
DEPENDENCY_BUDGET_MB = 300
IN_FLIGHT_AT_STOP = 16
TEXTS = ["I loved it", "The plot was thin and the actors bored.", "Ada Lovelace lived in London."]


# ---- the README's first-contact commands ----------------------------------------------------------


def readme_commands() -> list[str]:
    """The lines between the image-test markers of the README (comments dropped)."""
    block = re.search(r"<!-- image-test:begin -->\n```sh\n(.*?)```\n<!-- image-test:end -->", README.read_text(), re.S)
    assert block, "README.md lost its image-test block"
    lines = [line.split(" #", 1)[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line]


def readme_command(program: str, verb: str) -> list[str]:
    for line in readme_commands():
        argv = shlex.split(line)
        if argv[:2] == [program, verb]:
            return argv
    raise AssertionError(f"no `{program} {verb}` line in the README's image-test block")


def without_port_mappings(argv: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("-p", "--publish"):
            skip = True
        elif not arg.startswith(("-p=", "--publish=")):
            out.append(arg)
    return out


# ---- the engine --------------------------------------------------------------------------------


def _builds_with_buildkit(binary: str) -> bool:
    """A client whose `docker build` uses BuildKit (a newer client without buildx cannot)."""
    probe = subprocess.run(
        [binary, "build", "-q", "-"],
        input="FROM scratch\nLABEL squeezeserve.probe=1\n",
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_BUILDKIT": "1"},
        timeout=120,
    )
    return probe.returncode == 0


@pytest.fixture(scope="module")
def docker() -> str:
    # SQZ_DOCKER (set by ../shared/tools/docker-engine) first, then the clients on PATH.
    candidates = dict.fromkeys(filter(None, [os.environ.get("SQZ_DOCKER"), shutil.which("docker"), "/usr/bin/docker"]))
    reachable = [
        c for c in candidates if Path(c).exists() and subprocess.run([c, "info"], capture_output=True).returncode == 0
    ]
    if not reachable:
        reason = 'no Docker engine reachable (as root: eval "$(../shared/tools/docker-engine)")'
        if os.environ.get("SQZ_DOCKER"):
            pytest.fail(f"SQZ_DOCKER is set but {reason}")
        pytest.skip(reason)
    for binary in reachable:
        if _builds_with_buildkit(binary):
            return binary
    pytest.fail(f"no Docker client here builds with BuildKit (tried {', '.join(reachable)}); install buildx")


def run(argv: list[str], timeout_s: float = 120.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    if check and result.returncode != 0:
        raise AssertionError(f"{shlex.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


# ---- build -----------------------------------------------------------------------------------


@dataclass
class Image:
    tag: str
    build_s: float
    store: Path
    figures: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
def image(docker: str) -> Iterator[Image]:
    store = ROOT / CONTEXT_STORE
    shutil.rmtree(store, ignore_errors=True)
    # Tiny untrained models flip on any perturbation: the int8 gate's Δp bound is loosened as for
    # every tiny test export; the gate itself is tested elsewhere.
    tiny = ["--demo", "--demo-size", "tiny", "--max-prob-delta", str(TINY_MAX_PROB_DELTA), "--quiet"]
    run([sys.executable, "-m", "service", "export", *tiny, "--store", str(store)])
    # A store copied from the build context may carry any host modes (a umask of 077, a copy by
    # root): the image must still make it readable to its own user.
    for path in [store, *store.rglob("*")]:
        path.chmod(stat.S_IMODE(path.stat().st_mode) & 0o700)

    tag = f"squeezeserve-test:{os.getpid()}"
    argv = readme_command("docker", "build")
    argv[0] = docker
    argv[argv.index("-t") + 1] = tag
    base = os.environ.get("SQZ_TEST_PYTHON_IMAGE")
    extra = ["--network", "host", "--build-arg", f"STORE_FROM_CONTEXT={CONTEXT_STORE}"]
    if base:
        extra += ["--build-arg", f"PYTHON_IMAGE={base}"]
    argv[2:2] = extra
    started = time.monotonic()
    # BuildKit builds only the stages the image needs (the store-from-context build never reaches
    # the PyTorch stage); the legacy builder would build them all.
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=1200, env=env)
    built = Image(tag, time.monotonic() - started, store)
    try:
        assert result.returncode == 0, result.stderr[-4000:]
        yield built
    finally:
        subprocess.run([docker, "rmi", "-f", tag], capture_output=True)
        shutil.rmtree(store, ignore_errors=True)
        _report(built)


def _report(image: Image) -> None:
    figures = {"build_s": round(image.build_s, 1), **image.figures}
    Path(os.environ.get("SQZ_IMAGE_REPORT", ROOT / REPORT)).write_text(json.dumps(figures, indent=2) + "\n")


# ---- run -------------------------------------------------------------------------------------


@dataclass
class Container:
    docker: str
    name: str
    http: str
    grpc_address: str

    def exec(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([self.docker, "exec", self.name, *argv], check=check)

    def logs(self) -> str:
        result = run([self.docker, "logs", self.name])
        return result.stdout + result.stderr

    def inspect(self, template: str) -> str:
        return run([self.docker, "inspect", "--format", template, self.name]).stdout.strip()

    def metric(self, name: str) -> float:
        """Sum of a metric's samples over all labels, from the server's own /metrics."""
        text = httpx.get(self.http + "/metrics", timeout=10).text
        return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples if s.name == name)


def start_container(docker: str, image: Image, name: str, env: dict[str, str]) -> tuple[Container, float]:
    """`docker run` as the README writes it; returns the container and its time to ready."""
    http_port, grpc_port = free_port(), free_port()
    argv = without_port_mappings(readme_command("docker", "run"))
    argv[0] = docker
    argv[argv.index("--name") + 1] = name
    assert argv[-1] == "squeezeserve", "the README's docker run line must end with the image name"
    argv[-1] = image.tag
    settings = {"SQZ_HOST": "127.0.0.1", "SQZ_HTTP_PORT": str(http_port), "SQZ_GRPC_PORT": str(grpc_port), **env}
    argv[2:2] = ["--network", "host"] + [arg for k, v in settings.items() for arg in ("-e", f"{k}={v}")]
    subprocess.run([docker, "rm", "-f", name], capture_output=True)
    started = time.monotonic()
    run(argv)
    container = Container(docker, name, f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}")
    while time.monotonic() - started < READY_BOUND_S:
        try:
            if httpx.get(container.http + "/readyz", timeout=2).status_code == 200:
                return container, time.monotonic() - started
        except httpx.TransportError:
            pass
        if container.inspect("{{.State.Running}}") != "true":
            break
        time.sleep(0.1)
    logs = container.logs()
    subprocess.run([docker, "rm", "-f", name], capture_output=True)
    raise AssertionError(f"container not ready within {READY_BOUND_S} s:\n{logs[-4000:]}")


def stop_container(container: Container) -> tuple[int, str]:
    """`docker stop` as the README writes it; the exit code and the logs."""
    argv = readme_command("docker", "stop")
    argv[0] = container.docker
    argv[-1] = container.name
    run(argv, timeout_s=90)
    code = int(container.inspect("{{.State.ExitCode}}"))
    logs = container.logs()
    subprocess.run([container.docker, "rm", "-f", container.name], capture_output=True)
    return code, logs


@pytest.fixture(scope="module")
def container(docker: str, image: Image) -> Iterator[Container]:
    running, ready_s = start_container(docker, image, f"squeezeserve-test-{os.getpid()}", {})
    image.figures["ready_s"] = round(ready_s, 2)
    try:
        yield running
    finally:
        code, logs = stop_container(running)
        image.figures["exit_code"] = code
        assert "Traceback" not in logs, logs[-4000:]


# ---- the same store served in-process, for reference --------------------------------------------


@pytest.fixture(scope="module")
def reference(image: Image) -> Iterator[Container]:
    """`squeezeserve serve` on the host, on the same store the image holds."""
    process = ServerProcess(image.store, env={"SQZ_INTRA_OP_THREADS": "2"}, ready_timeout_s=READY_BOUND_S)
    with process:
        yield Container("", "", process.http_url, process.grpc_target)


# ---- what a user sees ------------------------------------------------------------------------


REST_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("/v1/classify", {"model": "demo-classify", "inputs": TEXTS, "parameters": {"top_k": None}}),
    ("/v1/token-classify", {"model": "demo-ner", "inputs": TEXTS, "parameters": {"aggregation_strategy": "simple"}}),
    ("/v1/answer", {"model": "demo-qa", "inputs": {"question": "Where did she live?", "context": TEXTS[2]}}),
    (
        "/v2/models/demo-classify/infer",
        {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [3, 1], "data": TEXTS}]},
    ),
    ("/v1/models", {}),
    ("/v2/models/demo-qa", {}),
]


def _rest(server: Container, path: str, body: dict[str, Any]) -> Any:
    response = httpx.post(server.http + path, json=body, timeout=30) if body else httpx.get(server.http + path)
    assert response.status_code == 200, (path, response.text)
    return response.json()


def _grpc(server: Container) -> list[Any]:
    with grpc.insecure_channel(server.grpc_address) as channel:
        v1 = squeezeserve_pb2_grpc.InferenceStub(channel)
        v2 = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
        classify = v1.Classify(pb.ClassifyRequest(model="demo-classify", inputs=[pb.TextInput(text=t) for t in TEXTS]))
        request = ipb.ModelInferRequest(model_name="demo-classify")
        tensor = request.inputs.add(name="text", datatype="BYTES", shape=[len(TEXTS), 1])
        tensor.contents.bytes_contents.extend(t.encode() for t in TEXTS)
        infer = v2.ModelInfer(request, timeout=30)
        infer.ClearField("id")
        return [classify.SerializeToString(deterministic=True), infer.SerializeToString(deterministic=True)]


def test_the_image_answers_like_the_same_store_served_in_process(container: Container, reference: Container) -> None:
    for path, body in REST_CALLS:
        assert _rest(container, path, body) == _rest(reference, path, body), path
    assert _grpc(container) == _grpc(reference)


def test_it_runs_as_the_images_user_who_cannot_write_the_models(container: Container) -> None:
    assert container.exec("id", "-u").stdout.strip() == "10001"
    attempt = container.exec("python", "-c", "open('/models/demo-classify/x', 'w')", check=False)
    assert attempt.returncode != 0 and ("PermissionError" in attempt.stderr or "Read-only" in attempt.stderr)
    # Root owns the store and only root could write it, even without the read-only root filesystem.
    owners = container.exec("find", "/models", "-perm", "/022", "-o", "!", "-user", "root").stdout.split()
    assert owners == [], owners


def test_the_image_has_no_torch_or_transformers(container: Container) -> None:
    probe = "import importlib.util as u; print([m for m in ('torch', 'transformers') if u.find_spec(m)])"
    assert container.exec("python", "-c", probe).stdout.strip() == "[]"


def test_the_healthcheck_reports_healthy(container: Container) -> None:
    deadline = time.monotonic() + 60
    status = container.inspect("{{.State.Health.Status}}")
    while status != "healthy" and time.monotonic() < deadline:
        time.sleep(0.5)
        status = container.inspect("{{.State.Health.Status}}")
    assert status == "healthy", container.inspect("{{json .State.Health}}")


def test_the_readme_curl_lines_work_against_the_image(container: Container) -> None:
    for line in readme_commands():
        if line.startswith("curl"):
            argv = [arg.replace("localhost:8000", container.http.removeprefix("http://")) for arg in shlex.split(line)]
            result = run(argv + ["--fail-with-body", "--max-time", "30"])
            assert result.stdout.strip(), line


def test_image_size_within_budget(docker: str, image: Image) -> None:
    size = int(run([docker, "image", "inspect", "--format", "{{.Size}}", image.tag]).stdout)
    base_image = os.environ.get("SQZ_TEST_PYTHON_IMAGE", "python:3.11-slim")
    base = int(run([docker, "image", "inspect", "--format", "{{.Size}}", base_image]).stdout)
    store = sum(p.stat().st_size for p in image.store.rglob("*") if p.is_file() and p.name != "model.fp32.onnx")
    added_mb = (size - base - store) / 1e6
    image.figures.update(image_mb=round(size / 1e6, 1), base_mb=round(base / 1e6, 1), added_mb=round(added_mb, 1))
    assert added_mb <= DEPENDENCY_BUDGET_MB, image.figures


def test_docker_stop_answers_every_request_in_flight_and_exits_0(docker: str, image: Image) -> None:
    """SIGTERM with >= 16 requests in the server (its own gauge says so): all answered, exit 0."""
    # A 1 s batch window keeps the requests inside the server long enough to stop it under them;
    # no drain delay, so the listeners close at once and the answers come from the grace period.
    env = {
        "SQZ_MAX_BATCH_DELAY_MS": "1000",
        "SQZ_ADAPTIVE_BATCH_DELAY": "false",
        "SQZ_MAX_BATCH_SIZE": "64",
        "SQZ_DRAIN_DELAY_S": "0",
    }
    running, _ = start_container(docker, image, f"squeezeserve-drain-{os.getpid()}", env)
    total = IN_FLIGHT_AT_STOP + 8
    statuses: list[int] = []
    lock = threading.Lock()

    def call(i: int) -> None:
        body = {"model": "demo-classify", "inputs": [f"request {i} arrives before the stop"]}
        code = httpx.post(running.http + "/v1/classify", json=body, timeout=60).status_code
        with lock:
            statuses.append(code)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(total)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    in_flight = running.metric("squeezeserve_requests_in_flight")
    while in_flight < IN_FLIGHT_AT_STOP and time.monotonic() < deadline:
        time.sleep(0.01)
        in_flight = running.metric("squeezeserve_requests_in_flight")
    assert in_flight >= IN_FLIGHT_AT_STOP, in_flight
    code, logs = stop_container(running)
    for thread in threads:
        thread.join(60)
    image.figures.update(drain_in_flight_at_stop=in_flight, drain_answered_200=statuses.count(200))
    assert sorted(statuses) == [200] * total, statuses
    assert code == 0, logs[-4000:]
    assert "Traceback" not in logs, logs[-4000:]
    assert "draining" in logs
