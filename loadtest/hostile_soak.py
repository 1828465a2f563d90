"""Hostile soak: mixed valid and invalid traffic on REST and gRPC for a bounded time.

    python -m loadtest.hostile_soak [--minutes 10] [--concurrency 4] [--store DIR] [--out DIR]

Every request is one of a fixed cycle of kinds (valid, malformed JSON, schema error, lone
surrogate, oversized body, unknown model, v2 valid and invalid, gRPC valid and corrupt), each
with the status it must get. Reports the server's RSS, open fds and threads over time, every
unexpected status, and whether `squeezeserve_requests_total` equals what was sent, per outcome.
"""

from __future__ import annotations

import argparse
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
from prometheus_client.parser import text_string_to_metric_families

from loadtest.run import DEFAULT_CACHE, ensure_store
from loadtest.server import ServerProcess
from service.grpc.generated.squeezeserve.v1 import squeezeserve_pb2 as pb

SAMPLE_EVERY_S = 5.0
MAX_BODY_BYTES = 64 * 1024
CLASSIFY = "/squeezeserve.v1.Inference/Classify"


@dataclass(frozen=True)
class Kind:
    name: str
    outcome: str  # the metrics outcome it must be counted under
    expect: str  # the status (HTTP code or gRPC code name) it must get
    send: Callable[[httpx.Client, grpc.Channel, str], str]  # returns the status it got


def _post(path: str, content: bytes) -> Callable[[httpx.Client, grpc.Channel, str], str]:
    def send(client: httpx.Client, _channel: grpc.Channel, _model: str) -> str:
        return str(client.post(path, content=content, headers={"content-type": "application/json"}).status_code)

    return send


def _grpc(payload: bytes) -> Callable[[httpx.Client, grpc.Channel, str], str]:
    def send(_client: httpx.Client, channel: grpc.Channel, _model: str) -> str:
        try:
            channel.unary_unary(CLASSIFY)(payload, timeout=30)
        except grpc.RpcError as error:
            return str(error.code().name)
        return "OK"

    return send


def kinds(model: str) -> list[Kind]:
    v2 = f"/v2/models/{model}/infer"
    good_grpc = pb.ClassifyRequest(model=model, inputs=[pb.TextInput(text="a fine grpc day")]).SerializeToString()
    tensor = '{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["v2 text"]}]}'
    return [
        Kind("valid", "ok", "200", _post("/v1/classify", b'{"inputs": ["a fine day", "rain"]}')),
        Kind("malformed-json", "invalid", "400", _post("/v1/classify", b'{"inputs": ')),
        Kind("schema-error", "invalid", "422", _post("/v1/classify", b'{"inputs": 5}')),
        Kind("lone-surrogate", "invalid", "422", _post("/v1/classify", b'{"inputs": "a\\ud800b"}')),
        Kind("oversized", "invalid", "413", _post("/v1/classify", b"x" * (MAX_BODY_BYTES + 1))),
        Kind("unknown-model", "invalid", "404", _post("/v1/classify", b'{"inputs": "x", "model": "nope"}')),
        Kind("v2-valid", "ok", "200", _post(v2, tensor.encode())),
        Kind("v2-invalid", "invalid", "422", _post(v2, b'{"inputs": [{"name": "t"}]}')),
        Kind("grpc-valid", "ok", "OK", _grpc(good_grpc)),
        Kind("grpc-corrupt", "invalid", "INVALID_ARGUMENT", _grpc(b"\xff\xff\xff\xff")),
    ]


def proc_figures(pid: int) -> tuple[float, int, int]:
    """RSS MiB, open fds, threads of the server process."""
    rss, threads = 0.0, 0
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024.0
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss, len(list(Path(f"/proc/{pid}/fd").iterdir())), threads


def counted(url: str) -> Counter[str]:
    """squeezeserve_requests_total by outcome, summed over models, tasks and transports."""
    totals: Counter[str] = Counter()
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text):
        for sample in family.samples:
            if sample.name == "squeezeserve_requests_total":
                totals[sample.labels["outcome"]] += int(sample.value)
    return totals


def drive(server: ServerProcess, model: str, until: float, sent: Counter[str], wrong: Counter[str]) -> None:
    cycle = itertools.cycle(kinds(model))
    with (
        httpx.Client(base_url=server.http_url, timeout=30) as client,
        grpc.insecure_channel(server.grpc_target) as channel,
    ):
        while time.monotonic() < until:
            kind = next(cycle)
            got = kind.send(client, channel, model)
            sent[kind.outcome] += 1
            if got != kind.expect:
                wrong[f"{kind.name}: {got} (expected {kind.expect})"] += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--model", default="demo-classify")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("loadtest/results"))
    args = parser.parse_args()
    store = ensure_store(args.store, args.cache)
    env = {"SQZ_MAX_BODY_BYTES": str(MAX_BODY_BYTES)}
    samples: list[tuple[float, float, int, int]] = []
    sent: Counter[str] = Counter()
    wrong: Counter[str] = Counter()
    with ServerProcess(store, env=env) as server:
        started = time.monotonic()
        until = started + args.minutes * 60
        workers = [
            threading.Thread(target=drive, args=(server, args.model, until, sent, wrong), daemon=True)
            for _ in range(args.concurrency)
        ]
        for worker in workers:
            worker.start()
        while any(w.is_alive() for w in workers) and time.monotonic() < until + 60:
            samples.append((time.monotonic() - started, *proc_figures(server.pid)))
            time.sleep(SAMPLE_EVERY_S)
        for worker in workers:
            worker.join(timeout=60)
        samples.append((time.monotonic() - started, *proc_figures(server.pid)))
        totals = counted(server.http_url)
    text = report(samples, sent, totals, wrong, args.minutes)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hostile_soak.md").write_text(text, encoding="utf-8")
    print(text)
    if wrong or totals != sent:
        raise SystemExit(1)


def report(
    samples: list[tuple[float, float, int, int]],
    sent: Counter[str],
    totals: Counter[str],
    wrong: Counter[str],
    minutes: float,
) -> str:
    after_warmup = next((s for s in samples if s[0] >= 60.0), samples[0])
    last = samples[-1]
    lines = [
        f"Hostile soak: {minutes:g} min, {sum(sent.values())} requests ({dict(sent)}).",
        f"Counted by the server: {dict(totals)} -> {'equal' if totals == sent else 'DIFFERENT'}.",
        f"Unexpected statuses: {dict(wrong) or 'none'}.",
        "",
        "| t | RSS MiB | fds | threads |",
        "|---:|---:|---:|---:|",
        *(
            f"| {t:.0f} s | {rss:.0f} | {fds} | {threads} |"
            for t, rss, fds, threads in samples[:: max(1, len(samples) // 8)]
        ),
        f"| {last[0]:.0f} s | {last[1]:.0f} | {last[2]} | {last[3]} |",
        "",
        f"RSS {after_warmup[1]:.0f} -> {last[1]:.0f} MiB after the first minute ({last[1] - after_warmup[1]:+.0f});"
        f" fds {after_warmup[2]} -> {last[2]}; threads {after_warmup[3]} -> {last[3]}.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
