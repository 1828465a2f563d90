"""Settings: every knob, from SQZ_* environment variables (or CLI flags), with units and bounds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.batching.types import BatcherConfig
from service.runtime.cpus import available_cpus
from service.runtime.session import SessionConfig, Spinning
from service.tasks.base import Limits

# The batcher's and the request limits' defaults are written once, in their dataclasses; the
# settings take them from there and add what only the environment needs (names, bounds).
_BATCHING = BatcherConfig()
_LIMITS = Limits()


class Settings(BaseSettings):
    """Built once at startup and passed down; nothing reads the environment after that."""

    model_config = SettingsConfigDict(env_prefix="SQZ_", frozen=True, extra="ignore")

    store_dir: Path = Path("model_store")
    host: str = "127.0.0.1"
    http_port: int = Field(8000, ge=0, le=65535)
    grpc_port: int = Field(50051, ge=0, le=65535)

    # ONNX Runtime: session instances per model x intra-op threads each (Triton's instance groups).
    # intra_op_threads unset: the CPUs this container may use (cgroup quota) / session_instances.
    session_instances: int = Field(1, ge=1, le=64)
    # Batches that may run at once on each session (ORT sessions are thread-safe). With 2, one
    # batch runs while the next forms and Python pre/post-processing overlaps ORT, the way a
    # threaded server gets it; a lone batch still gets every intra-op thread.
    runs_per_session: int = Field(1, ge=1, le=16)
    # How ORT's intra-op threads wait for work (SessionConfig.spinning): "run" = spin inside a run
    # only, "always" (ORT's default) = between runs too, "off" = never; true/false mean always/off.
    # Measured in docs/benchmarks.md: spinning between runs took the cores from the event loop
    # (0.58x on mixed lengths at 64 callers); never spinning made every run slower.
    ort_spinning: Spinning = SessionConfig().spinning
    intra_op_threads: int | None = Field(None, ge=1, le=256)
    # Under load, batches run side by side, one core each (a second session with one intra-op
    # thread, one run per core); a batch that is all there is to run still gets every core. Only
    # with one session instance and one run per session (otherwise that layout is the user's).
    side_by_side_runs: bool = True
    warmup: bool = True

    # Dynamic batching, per model.
    max_batch_size: int = Field(_BATCHING.max_batch_size, ge=1, le=1024)
    max_batch_tokens: int = Field(_BATCHING.max_batch_tokens, ge=16, le=1_048_576)
    max_batch_delay_ms: float = Field(_BATCHING.max_batch_delay_ms, ge=0.0, le=1000.0)
    adaptive_batch_delay: bool = _BATCHING.adaptive_delay  # a lone caller pays no delay
    max_queued_rows: int = Field(_BATCHING.max_queued_rows, ge=1, le=1_000_000)
    group_by_length: bool = _BATCHING.group_by_length
    min_padding_efficiency: float = Field(_BATCHING.min_padding_efficiency, ge=0.0, le=1.0)

    # Lifecycle: on SIGTERM, readiness goes false at once; after drain_delay_s (load balancers
    # notice) the listeners close; in-flight work then has shutdown_grace_s to finish.
    drain_delay_s: float = Field(2.0, ge=0.0, le=300.0)
    shutdown_grace_s: float = Field(30.0, ge=0.0, le=3600.0)
    # Readiness once every store entry has been tried: false (default) = ready when at least one
    # model is ready (failed entries are listed as failed); true = only when every entry is ready.
    ready_requires_all_models: bool = False
    log_level: str = Field("info", pattern="^(debug|info|warning|error)$")

    # Requests. Bodies over max_body_bytes get 413 before any parsing (64 inputs x a few KiB fit).
    max_body_bytes: int = Field(1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    request_timeout_s: float = Field(30.0, gt=0.0, le=3600.0)
    # Slow and idle HTTP clients: a request (headers and body) must arrive whole within
    # receive_timeout_s; an idle keep-alive connection is closed after keep_alive_timeout_s.
    receive_timeout_s: float = Field(10.0, gt=0.0, le=3600.0)
    keep_alive_timeout_s: float = Field(5.0, gt=0.0, le=3600.0)
    max_header_bytes: int = Field(16 * 1024, ge=1024, le=1024 * 1024)
    max_header_count: int = Field(100, ge=8, le=10_000)
    max_inputs_per_request: int = Field(_LIMITS.max_inputs, ge=1, le=10_000)
    max_chars_per_text: int = Field(_LIMITS.max_chars, ge=1, le=10_000_000)
    tokenizer_threads: int = Field(2, ge=1, le=64)
    # The REST fast path (api/fast_path.py): a well-formed /v1 task request is parsed, served and
    # written without FastAPI's routing, dependencies and validation layers (the same models and
    # the same call; anything else goes through FastAPI). False: FastAPI serves every request.
    rest_fast_path: bool = True

    # Security (service/security/). API keys: one per line in api_keys_file, re-read on SIGHUP or
    # when the file changes; every route needs one except the families named in auth_exempt.
    api_keys_file: Path | None = None
    auth_exempt: Annotated[frozenset[Literal["health", "metrics", "docs"]], NoDecode] = frozenset(
        {"health", "metrics", "docs"}
    )
    # TLS on both ports (cert + key); with a client CA, both ports require client certificates.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None
    # Browser-facing: CORS origins (none: no CORS headers) and accepted Host names (none: any).
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = ()
    log_format: Literal["text", "json"] = "text"
    access_log: bool | None = None  # one line per request; None: on with log_format=json

    @field_validator("ort_spinning", mode="before")
    @classmethod
    def _spinning_booleans(cls, value: object) -> object:
        if isinstance(value, bool):
            return "always" if value else "off"
        if isinstance(value, str):
            lowered = value.strip().lower()
            return {"true": "always", "1": "always", "false": "off", "0": "off"}.get(lowered, lowered)
        return value

    @field_validator("auth_exempt", "cors_origins", "allowed_hosts", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _tls_files_come_together(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("SQZ_TLS_CERT_FILE and SQZ_TLS_KEY_FILE must be set together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("SQZ_TLS_CLIENT_CA_FILE needs SQZ_TLS_CERT_FILE and SQZ_TLS_KEY_FILE")
        return self

    def access_log_enabled(self) -> bool:
        return self.log_format == "json" if self.access_log is None else self.access_log

    def batcher_config(self) -> BatcherConfig:
        return BatcherConfig(
            max_batch_size=self.max_batch_size,
            max_batch_tokens=self.max_batch_tokens,
            max_batch_delay_ms=self.max_batch_delay_ms,
            adaptive_delay=self.adaptive_batch_delay,
            max_queued_rows=self.max_queued_rows,
            group_by_length=self.group_by_length,
            min_padding_efficiency=self.min_padding_efficiency,
        )

    def resolved_intra_op_threads(self) -> int:
        if self.intra_op_threads is not None:
            return self.intra_op_threads
        return max(1, available_cpus() // self.session_instances)

    def side_by_side_slots(self) -> int:
        """How many one-core runs may go side by side (0: off, every batch gets the session's threads)."""
        slots = min(self.resolved_intra_op_threads(), available_cpus())  # never more runs than cores
        plain = self.session_instances == 1 and self.runs_per_session == 1
        return slots if self.side_by_side_runs and plain and slots > 1 else 0

    def session_config(self) -> SessionConfig:
        # Several sessions on the same cores must not spin-wait against each other.
        return SessionConfig(
            intra_op_threads=self.resolved_intra_op_threads(),
            spinning=self.ort_spinning,
        )

    def limits(self) -> Limits:
        return Limits(max_inputs=self.max_inputs_per_request, max_chars=self.max_chars_per_text)
