"""Naive baseline vs squeezeserve on the same weights and the same wrk bodies.

    python -m loadtest.baseline [--seconds 10] [--out loadtest/results]

The baseline (loadtest/baseline_app.py) serves a random-init base-size SqueezeBERT checkpoint with
a transformers pipeline in PyTorch; squeezeserve serves the same checkpoint exported to int8.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from loadtest.run import DEFAULT_CACHE
from loadtest.server import ServerProcess, free_port
from loadtest.workloads.bodies import classify_fixed, write_bodies
from loadtest.workloads.texts import TextBuilder
from loadtest.wrk import run_wrk

TASK = "sequence-classification"
CELLS = ((32, 16), (128, 4))


def build(cache: Path) -> tuple[Path, Path]:
    """A base-size checkpoint and its squeezeserve export (cached)."""
    from service.export.demo import BASE_SHAPE, write_random_checkpoint
    from service.export.exporter import ExportRequest, export_model

    checkpoint, store = cache / "baseline-checkpoint", cache / "baseline-store"
    if not (checkpoint / "config.json").exists():
        write_random_checkpoint(checkpoint, TASK, BASE_SHAPE)
    if not (store / "baseline" / "manifest.json").exists():
        export_model(ExportRequest(str(checkpoint), TASK, "baseline", store))
    return checkpoint, store


def start_baseline(checkpoint: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "SQZ_BASELINE_CHECKPOINT": str(checkpoint)}
    command = [sys.executable, "-m", "uvicorn", "loadtest.baseline_app:app", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=1)  # noqa: S310 (127.0.0.1 only)
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("baseline server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=Path("loadtest/results"))
    args = parser.parse_args()
    checkpoint, store = build(args.cache)
    builder = TextBuilder(store / "baseline" / "tokenizer.json")
    cells = [(classify_fixed(builder, "baseline", n), c) for n, c in CELLS]
    bodies = [write_bodies(w, args.out / "bodies") for w, _ in cells]
    rows = ["| server | workload | conc. | req/s | p50 ms | p99 ms | errors |", "|---|---|---:|---:|---:|---:|---:|"]
    proc, url = start_baseline(checkpoint)
    try:
        for (workload, conc), body in zip(cells, bodies):
            run_wrk(url + workload.path, body, workload.name, 2, 3.0)
            r = run_wrk(url + workload.path, body, workload.name, conc, args.seconds)
            rows.append(
                f"| FastAPI + transformers pipeline | {workload.name} | {conc} | {r.rps:.1f} | "
                f"{r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.error_rate:.1%} |"
            )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    with ServerProcess(store) as server:
        for (workload, conc), body in zip(cells, bodies):
            run_wrk(server.http_url + workload.path, body, workload.name, 2, 3.0)
            r = run_wrk(server.http_url + workload.path, body, workload.name, conc, args.seconds)
            rows.append(
                f"| squeezeserve (int8) | {workload.name} | {conc} | {r.rps:.1f} | "
                f"{r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.error_rate:.1%} |"
            )
    text = "\n".join(rows) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "baseline.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
