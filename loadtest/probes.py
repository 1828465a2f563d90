"""What the server did during a run: its CPU time (/proc) and batch figures from /metrics."""

from __future__ import annotations

import os
import re
import urllib.request
from dataclasses import dataclass

TICKS = os.sysconf("SC_CLK_TCK")
SAMPLE = re.compile(r"^(squeezeserve_[a-z_]+)(\{[^}]*\})? ([0-9.eE+-]+|NaN)$")
LABEL = re.compile(r'([a-zA-Z_]+)="([^"]*)"')
TRACKED = (
    "squeezeserve_batch_rows_sum",
    "squeezeserve_batch_rows_count",
    "squeezeserve_batch_inference_seconds_sum",
    "squeezeserve_queue_wait_seconds_sum",
    "squeezeserve_queue_wait_seconds_count",
    "squeezeserve_tokenize_duration_seconds_sum",
    "squeezeserve_tokenize_duration_seconds_count",
    "squeezeserve_batch_padding_efficiency_ratio_sum",
    "squeezeserve_batch_padding_efficiency_ratio_count",
)


def process_cpu_s(pid: int) -> float:
    """user + system CPU seconds of a process (all its threads) so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15)


def metrics_text(http_url: str) -> str:
    with urllib.request.urlopen(f"{http_url}/metrics", timeout=5) as response:  # noqa: S310 (127.0.0.1 only)
        return str(response.read().decode())


def scrape(http_url: str) -> dict[str, float]:
    """Sums of the tracked series over all label sets."""
    text = metrics_text(http_url)
    totals = dict.fromkeys(TRACKED, 0.0)
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and match.group(1) in totals:
            totals[match.group(1)] += float(match.group(3))
    return totals


def request_counts(http_url: str) -> dict[tuple[str, str], float]:
    """squeezeserve_requests_total by (transport, outcome), summed over models and tasks."""
    counts: dict[tuple[str, str], float] = {}
    for line in metrics_text(http_url).splitlines():
        match = SAMPLE.match(line)
        if match and match.group(1) == "squeezeserve_requests_total":
            labels = dict(LABEL.findall(match.group(2) or ""))
            key = (labels.get("transport", ""), labels.get("outcome", ""))
            counts[key] = counts.get(key, 0.0) + float(match.group(3))
    return counts


@dataclass(frozen=True)
class ServerSide:
    cpu_s: float
    batches: int
    rows_per_batch: float
    ort_ms_per_batch: float
    ort_busy_share: float  # ORT wall time / run wall time
    queue_wait_ms: float
    tokenize_ms: float
    padding_efficiency: float  # mean over batches of real tokens / padded tokens


def server_side(before: dict[str, float], after: dict[str, float], cpu_s: float, seconds: float) -> ServerSide:
    d = {k: after[k] - before[k] for k in TRACKED}
    batches = int(d["squeezeserve_batch_rows_count"])
    ort_s = d["squeezeserve_batch_inference_seconds_sum"]
    waits = d["squeezeserve_queue_wait_seconds_count"] or 1
    tokens = d["squeezeserve_tokenize_duration_seconds_count"] or 1
    return ServerSide(
        cpu_s=cpu_s,
        batches=batches,
        rows_per_batch=d["squeezeserve_batch_rows_sum"] / batches if batches else 0.0,
        ort_ms_per_batch=1000 * ort_s / batches if batches else 0.0,
        ort_busy_share=ort_s / seconds if seconds else 0.0,
        queue_wait_ms=1000 * d["squeezeserve_queue_wait_seconds_sum"] / waits,
        tokenize_ms=1000 * d["squeezeserve_tokenize_duration_seconds_sum"] / tokens,
        padding_efficiency=d["squeezeserve_batch_padding_efficiency_ratio_sum"]
        / (d["squeezeserve_batch_padding_efficiency_ratio_count"] or 1),
    )
