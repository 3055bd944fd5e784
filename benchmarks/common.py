"""Shared pieces of the benchmarks: paths, English-like text, locally trained tokenizers, the
result rows every benchmark writes and the command line every benchmark script accepts."""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LEXICON = REPO.parent / "shared" / "data" / "wake_lexicon.txt"
SKIPPED = 3  # exit status of a benchmark that could not run (missing data), not a failure


@dataclass
class Row:
    """One measured number: what it is, its value, the target it is held to and whether it is met."""

    benchmark: str
    measure: str
    value: Any
    unit: str = ""
    target: str = ""  # e.g. "< 10 s", "== 0", "" for a number reported without a target
    met: bool | None = None  # None: no target


@dataclass
class Report:
    """What a benchmark script writes: its rows, free-form details and how it ran."""

    benchmark: str
    quick: bool
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None

    def add(
        self, measure: str, value: Any, unit: str = "", target: str = "", met: bool | None = None
    ) -> Row:
        row = Row(self.benchmark, measure, value, unit, target, met)
        self.rows.append(row)
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        verdict = "" if met is None else ("  met" if met else "  NOT MET")
        print(
            f"  {measure}: {shown} {unit}".rstrip()
            + (f"  (target {target}){verdict}" if target else "")
        )
        sys.stdout.flush()
        return row

    def write(self, path: str | None) -> None:
        self.details.setdefault(
            "peak_rss_mib_self", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        )
        if path:
            payload = {
                "benchmark": self.benchmark,
                "quick": self.quick,
                "skipped": self.skipped,
                "rows": [asdict(r) for r in self.rows],
                "details": self.details,
            }
            Path(path).write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")


def parse_args(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    """The options every benchmark script takes: ``--quick`` and ``--json PATH``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--json", metavar="PATH", help="write the report as JSON here")
    return parser.parse_args(argv)


@contextmanager
def timer() -> Iterator[dict[str, float]]:
    """``with timer() as t: ...`` then ``t["s"]`` holds the wall-clock seconds."""
    box: dict[str, float] = {}
    started = time.perf_counter()
    try:
        yield box
    finally:
        box["s"] = time.perf_counter() - started


def run_child(argv: list[str], stdout: Any = None) -> tuple[int, float, float]:
    """Run ``argv`` in the repository (``stdout``: a file to write its output to); return its
    exit code, wall seconds and peak RSS in MiB (of that child and the processes it waited for)."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=REPO, stdout=stdout)
    if hasattr(os, "wait4"):
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        peak = usage.ru_maxrss
    else:  # pragma: no cover - platforms without wait4
        proc.wait()
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    seconds = time.perf_counter() - started
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return proc.returncode, seconds, peak / scale


def cpu_facts() -> dict[str, Any]:
    """CPU count (usable and total), model name, load average: for the JSON and the README."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_count": os.cpu_count(),
        "cpu_usable": usable,
        "cpu_model": model,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


# --------------------------------------------------------------------------- English-like text


# English-like text: wake2vec.testing (shared with the tests)
from wake2vec.testing import english_text  # noqa: E402,F401


def train_spm_tokenizer(directory: Path, text: str, vocab_size: int) -> Any:
    """``wake2vec.testing.train_spm_tokenizer`` on the lines of ``text``."""
    from wake2vec.testing import train_spm_tokenizer as train

    return train(directory, text.splitlines(), vocab_size)
