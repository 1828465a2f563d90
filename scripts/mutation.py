"""Mutation testing (mutmut 3): error tables, DataPlane, batcher and tokenizers, one group at a time.

    python scripts/mutation.py [--group NAME ...] [--max-minutes N]

Each group mutates a few modules and runs only the tests that exercise them, so the run stays
bounded on a small machine. mutmut reads its configuration from setup.cfg (the project's
pyproject.toml has no [tool.mutmut]); this script writes one per group, runs `mutmut run`, reads
`mutmut results`, and removes setup.cfg and mutants/ again. Prints the kill rate per group and
every surviving mutant's name (`mutmut show NAME` in a kept run shows its diff: --keep).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STORE = Path(tempfile.gettempdir()) / "squeezeserve-mutation-store"


@dataclass(frozen=True)
class Group:
    name: str
    modules: tuple[str, ...]
    tests: tuple[str, ...]


GROUPS = (
    Group(
        "errors",
        ("service/errors.py", "service/api/errors.py", "service/grpc/errors.py"),
        ("tests/test_error_mapping.py", "tests/test_grpc_errors.py::test_every_error_kind_maps_through_the_table"),
    ),
    Group("dataplane", ("service/dataplane.py",), ("tests/test_dataplane.py",)),
    Group("batching", ("service/batching/",), ("tests/test_batcher_forming.py", "tests/test_batcher_failures.py")),
    Group(
        "tokenization",
        ("service/tokenization.py",),
        # Not test_tasks_parity.py: it compares the store with checkpoints trained afresh each
        # session (their vocabulary varies), so it cannot run on the kept store (SQZ_TEST_STORE).
        ("tests/test_tokenization.py", "tests/test_offsets_property.py", "tests/test_task_inputs.py"),
    ),
    # Its own group: with the tokenizer's tests as well, one run took ~8 s per mutant.
    Group("wordpiece", ("service/wordpiece.py",), ("tests/test_wordpiece.py",)),
)


def setup_cfg(group: Group) -> str:
    def lines(values: tuple[str, ...]) -> str:
        return "\n".join(f"    {v}" for v in values)

    return (
        "[mutmut]\n"
        f"source_paths =\n{lines(group.modules)}\n"
        f"pytest_add_cli_args_test_selection =\n{lines(group.tests)}\n"
        "also_copy =\n    service/\n    proto/\n    loadtest/\n    scripts/\n"
        # ORT and grpc are not fork-safe once used: fork workers from a clean server process.
        "process_isolation = forkserver\n"
    )


def run_group(group: Group, mutmut: list[str], max_minutes: float, keep: bool) -> str:
    os.environ.setdefault("SQZ_TEST_STORE", str(STORE))  # the tiny test models, exported once
    cfg = ROOT / "setup.cfg"
    if cfg.exists():
        raise SystemExit("setup.cfg exists: this script writes its own and would overwrite it")
    cfg.write_text(setup_cfg(group), encoding="utf-8")
    try:
        try:
            subprocess.run([*mutmut, "run"], cwd=ROOT, timeout=max_minutes * 60, check=False)
        except subprocess.TimeoutExpired:
            print(f"{group.name}: stopped after {max_minutes} min; results are partial", flush=True)
        results = subprocess.run(
            [*mutmut, "results", "--all", "true"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout
    finally:
        cfg.unlink()
        if not keep:
            shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    return results


def summarize(name: str, results: str) -> str:
    statuses: dict[str, list[str]] = {}
    for line in results.splitlines():
        mutant, _, status = line.strip().rpartition(": ")
        if mutant:
            statuses.setdefault(status, []).append(mutant)
    killed = len(statuses.get("killed", []))
    total = sum(len(v) for v in statuses.values())
    rate = killed / total if total else 0.0
    report = [
        f"{name}: {killed}/{total} killed ({rate:.0%}); " + ", ".join(f"{k} {len(v)}" for k, v in statuses.items())
    ]
    for status, mutants in statuses.items():
        if status != "killed":
            report += [f"  {status}: {m}" for m in mutants]
    return "\n".join(report)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--group", action="append", choices=[g.name for g in GROUPS])
    parser.add_argument("--max-minutes", type=float, default=20.0, help="per group")
    parser.add_argument("--keep", action="store_true", help="keep mutants/ of the last group (mutmut show)")
    args = parser.parse_args()
    mutmut = [sys.executable, "-m", "mutmut"]
    for group in GROUPS:
        if args.group and group.name not in args.group:
            continue
        print(summarize(group.name, run_group(group, mutmut, args.max_minutes, args.keep)), flush=True)


if __name__ == "__main__":
    main()
