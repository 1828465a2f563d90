"""The serving path's Python steps, warm and right after a model run.

    python -m loadtest.cold_steps [--store STORE] [--workload classify-128] [--calls 200] [--out DIR]

A lone caller's request pays every step of the serving path right after ONNX Runtime has streamed
the whole graph (125 MB for the base-size demo classifier) through the caches (here 1 MB of L2
per core and 32 MB of L3). This measures what that costs, step by step: each step is timed
`--calls` times in one process, warm (called back to back) and after a run (each call right
after one batch-1 `session.run` of the workload's own texts, on the store entry's graph with the
server's session options). Medians in microseconds; writes OUT/cold_steps.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry

from loadtest.naive_model import NaiveModel
from loadtest.run import DEFAULT_CACHE, ensure_store
from loadtest.vs import model_of, workload
from loadtest.workloads.bodies import texts_of
from service.logs import request_id
from service.metrics import Metrics
from service.runtime.layout import split_outputs
from service.runtime.session import create_session
from service.tasks.base import ClassifyParams, TextInput
from service.tokenization import TextTokenizer


def median_us(step: Callable[[int], object], calls: int, before: Callable[[int], object] | None) -> float:
    times = []
    for i in range(calls):
        if before is not None:
            before(i)
        started = time.perf_counter()
        step(i)
        times.append((time.perf_counter() - started) * 1e6)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", type=Path)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--workload", default="classify-128", help="a classify-N workload")
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--out", type=Path, default=Path("/tmp/squeezeserve-cold-steps"))
    args = p.parse_args(argv)
    if not args.workload.startswith("classify-") or not 10 <= args.calls <= 2000:
        raise SystemExit("--workload takes classify-N, --calls 10..2000 (bounded runs only)")
    store = ensure_store(args.store, args.cache)
    entry = store / model_of(args.workload)
    texts = [TextInput(text) for text in texts_of(workload(args.workload, store).bodies)]
    model = NaiveModel(entry, threads=1)  # its task code and feeds; the session is the server's
    session = create_session(entry / model.manifest.graph_file)
    tokenizer: TextTokenizer = model.tokenizer
    params = ClassifyParams()
    prepared = [model.handler.preprocess([t], params) for t in texts]
    feeds = [model.feeds(p) for p in prepared]
    outputs = session.run(None, feeds[0])
    per_row = split_outputs(model.layout, outputs, [prepared[0].rows[0].length], model.task.token_level)
    metrics = Metrics(CollectorRegistry())

    def run(i: int) -> None:
        session.run(None, feeds[i % len(feeds)])

    steps: dict[str, Callable[[int], object]] = {
        "tokenize one text (`TextTokenizer.encode`)": lambda i: tokenizer.encode(texts[i % len(texts)].text),
        "a classification row (`TextTokenizer.encode_row`)": lambda i: tokenizer.encode_row(
            texts[i % len(texts)].text, None, model.manifest.max_seq_len
        ),
        "the task's preprocess (tokenize + rows)": lambda i: model.handler.preprocess([texts[i % len(texts)]], params),
        "feeds for one row": lambda i: model.feeds(prepared[i % len(prepared)]),
        "split a batch's outputs into rows": lambda i: split_outputs(
            model.layout, outputs, [prepared[0].rows[0].length], model.task.token_level
        ),
        "the task's postprocess (softmax, labels)": lambda i: model.handler.postprocess(prepared[0], per_row, params),
        "a Prometheus histogram: labels + observe": lambda i: metrics.tokenize_duration.labels("m").observe(0.001),
        "the same, its child remembered (`Metrics.child`)": lambda i: metrics.child(
            metrics.tokenize_duration, "m"
        ).observe(0.001),
        "a fresh request id: `uuid.uuid4().hex`": lambda i: uuid.uuid4().hex,
        "a fresh request id: `logs.request_id`": lambda i: request_id(None),
    }
    for _ in range(5):
        run(0)
    lines = [
        f"`python -m loadtest.cold_steps {' '.join(sys.argv[1:])}` (workload `{args.workload}`, "
        f"{args.calls} calls per cell, medians)",
        "",
        "| step | warm us | right after a run us | ratio |",
        "|---|---:|---:|---:|",
    ]
    for name, step in steps.items():
        median_us(step, 20, None)  # first calls (lazy setup) are not measured
        warm = median_us(step, args.calls, None)
        cold = median_us(step, args.calls, run)
        lines.append(f"| {name} | {warm:.1f} | {cold:.1f} | {cold / warm:.1f}x |")
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cold_steps.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
