"""Settings: env prefix, bounds, and the CPU-quota-aware thread default."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.batching.types import BatcherConfig
from service.config import Settings
from service.runtime import cpus
from service.runtime.session import SessionConfig, create_session
from service.tasks.base import Limits


def test_env_prefix_and_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQZ_MAX_BATCH_SIZE", "7")
    monkeypatch.setenv("SQZ_STORE_DIR", "/srv/models")
    settings = Settings()
    assert settings.max_batch_size == 7 and settings.store_dir == Path("/srv/models")
    assert settings.batcher_config().max_batch_size == 7
    monkeypatch.setenv("SQZ_MAX_BATCH_SIZE", "0")
    with pytest.raises(ValidationError):
        Settings()


def test_an_unconfigured_server_uses_the_batchers_and_the_limits_own_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("SQZ_")]:
        monkeypatch.delenv(name)
    settings = Settings()
    assert settings.batcher_config() == BatcherConfig()
    assert settings.limits() == Limits()
    assert settings.session_config().spinning == SessionConfig().spinning


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [("150000 100000\n", 2), ("100000 100000\n", 1), ("max 100000\n", None), ("garbage", None)],
)
def test_cgroup_v2_quota(tmp_path: Path, cpu_max: str, expected: int | None) -> None:
    path = tmp_path / "cpu.max"
    path.write_text(cpu_max)
    missing = tmp_path / "absent"
    got = cpus.available_cpus(cpu_max=path, v1_quota=missing, v1_period=missing)
    affinity = len(os.sched_getaffinity(0))
    assert got == (min(affinity, expected) if expected else affinity)


def test_threads_default_divides_the_cpus_between_instances(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("service.config.available_cpus", lambda: 8)
    assert Settings(session_instances=2).resolved_intra_op_threads() == 4
    assert Settings(session_instances=16).resolved_intra_op_threads() == 1
    assert Settings(session_instances=2, intra_op_threads=3).resolved_intra_op_threads() == 3


def test_security_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQZ_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("SQZ_ALLOWED_HOSTS", "api.example")
    monkeypatch.setenv("SQZ_AUTH_EXEMPT", "")
    settings = Settings()
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert settings.allowed_hosts == ("api.example",) and settings.auth_exempt == frozenset()
    monkeypatch.setenv("SQZ_AUTH_EXEMPT", "health,everything")
    with pytest.raises(ValidationError):
        Settings()
    monkeypatch.delenv("SQZ_AUTH_EXEMPT")
    assert Settings().auth_exempt == {"health", "metrics", "docs"}
    monkeypatch.setenv("SQZ_TLS_CERT_FILE", "/srv/tls/server.crt")  # a certificate without its key
    with pytest.raises(ValidationError, match="must be set together"):
        Settings()


@pytest.mark.parametrize(
    ("value", "spinning", "allow", "stop"),
    [("true", "always", "1", "0"), ("false", "off", "0", "0"), ("run", "run", "1", "1"), (None, "run", "1", "1")],
)
def test_ort_spinning_reaches_the_session(
    monkeypatch: pytest.MonkeyPatch, store: Path, value: str | None, spinning: str, allow: str, stop: str
) -> None:
    """SQZ_ORT_SPINNING: true/false keep their old meaning; "run" (default) spins only inside a run."""
    if value is not None:
        monkeypatch.setenv("SQZ_ORT_SPINNING", value)
    config = Settings().session_config()
    assert config.spinning == spinning
    options = create_session(store / "sequence-classification" / "model.onnx", config).get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == allow
    assert options.get_session_config_entry("session.force_spinning_stop") == stop
