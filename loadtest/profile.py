"""py-spy on the server while it is under load: where its Python threads spend their samples."""

from __future__ import annotations

import collections
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Profile:
    samples: int
    by_thread: list[tuple[str, float]]  # thread label, share of samples
    by_leaf: list[tuple[str, float]]  # innermost frame, share of samples
    raw_path: Path


def start_pyspy(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    binary = shutil.which("py-spy") or str(Path(__file__).resolve().parent.parent / ".venv/bin/py-spy")
    if not Path(binary).exists():
        return None
    command = [binary, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "100", "--threads",
               "--nonblocking", "--format", "raw", "-o", str(out)]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _short(frame: str) -> str:
    # "function (path/to/file.py:123)" -> "function (file.py)"
    name, _, where = frame.partition(" (")
    file = where.split(":")[0].rsplit("/", 1)[-1]
    return f"{name} ({file})" if file else name


def summarize(raw: Path, top: int = 12) -> Profile:
    threads: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        threads[frames[0].rsplit(": ", 1)[-1].strip()] += count
        leaves[_short(frames[-1])] += count
    share = lambda c: [(k, v / total) for k, v in c.most_common(top)] if total else []  # noqa: E731
    return Profile(total, share(threads), share(leaves), raw)


def stop_pyspy(process: subprocess.Popen[bytes], timeout_s: float) -> str:
    try:
        _, err = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate(timeout=10)
    return err.decode(errors="replace")
