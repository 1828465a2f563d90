"""Soak: steady mixed-length load for a bounded time while sampling the server's RSS.

    python -m loadtest.soak [--minutes 10] [--concurrency 8] [--out loadtest/results]

Writes OUT/soak_rss.csv, OUT/soak.md and (with matplotlib) OUT/soak_rss.png. Expectation: RSS
flat after warm-up (ORT's arena is sized at start-up by the warm-up at the largest batch shape).
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

from loadtest.run import DEFAULT_CACHE, ensure_store
from loadtest.server import ServerProcess
from loadtest.workloads.bodies import classify_mixed, write_bodies
from loadtest.workloads.texts import TextBuilder
from loadtest.wrk import run_wrk

MODEL = "demo-classify"
SAMPLE_EVERY_S = 5.0


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def sample(pid: int, stop: threading.Event, into: list[tuple[float, float]]) -> None:
    started = time.monotonic()
    while not stop.is_set():
        into.append((time.monotonic() - started, rss_mib(pid)))
        stop.wait(SAMPLE_EVERY_S)


def summary(samples: list[tuple[float, float]], minutes: float, rps: float, errors: float) -> str:
    def at(t: float) -> float:
        return min(samples, key=lambda s: abs(s[0] - t))[1]

    first_minute = at(60.0)
    last = samples[-1][1]
    lines = [
        f"Soak: {minutes:.0f} min of mixed-length /v1/classify, {rps:.1f} req/s, errors {errors:.2%}.",
        "",
        "| t | RSS MiB |",
        "|---:|---:|",
        *(f"| {t:.0f} s | {at(t):.0f} |" for t in (0.0, 60.0, minutes * 30.0, minutes * 60.0)),
        "",
        f"RSS after the first minute {first_minute:.0f} MiB, at the end {last:.0f} MiB "
        f"(change {last - first_minute:+.0f} MiB); max {max(r for _, r in samples):.0f} MiB.",
    ]
    return "\n".join(lines) + "\n"


def plot(samples: list[tuple[float, float]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot([t / 60 for t, _ in samples], [r for _, r in samples])
    ax.set_xlabel("minutes")
    ax.set_ylabel("server RSS (MiB)")
    ax.set_ylim(bottom=0)
    ax.set_title("squeezeserve soak: RSS under steady mixed-length load")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("loadtest/results"))
    args = parser.parse_args()
    store = ensure_store(args.store, args.cache)
    workload = classify_mixed(TextBuilder(store / MODEL / "tokenizer.json"), MODEL)
    bodies = write_bodies(workload, args.out / "bodies")
    samples: list[tuple[float, float]] = []
    with ServerProcess(store) as server:
        stop = threading.Event()
        sampler = threading.Thread(target=sample, args=(server.pid, stop, samples), daemon=True)
        sampler.start()
        result = run_wrk(server.http_url + workload.path, bodies, "soak", args.concurrency, args.minutes * 60)
        stop.set()
        sampler.join(timeout=10)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak_rss.csv").write_text(
        "seconds,rss_mib\n" + "".join(f"{t:.1f},{r:.1f}\n" for t, r in samples), encoding="utf-8"
    )
    text = summary(samples, args.minutes, result.rps, result.error_rate)
    (args.out / "soak.md").write_text(text, encoding="utf-8")
    plot(samples, args.out / "soak_rss.png")
    print(text)


if __name__ == "__main__":
    main()
