"""Benchmark: command-line start-up. ``wake2vec --help`` and ``wake2vec list-plugins`` in fresh
subprocesses (median of 5; --help target < 0.5 s), bare ``python -c pass`` for reference, and
whether ``--help`` imports torch, transformers or numpy (it must not)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, Report, parse_args  # noqa: E402

HELP_TARGET_S = 0.5
HEAVY = ("torch", "transformers", "numpy")

_IMPORT_PROBE = f"""
import sys
from wake2vec.cli import main
try:
    main(["--help"])
except SystemExit:
    pass
print("HEAVY=" + ",".join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)
"""


def command() -> list[str]:
    """The installed ``wake2vec`` script beside this interpreter, else ``python -m wake2vec``."""
    script = Path(sys.executable).with_name("wake2vec")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "wake2vec"]


def wall_times(argv: list[str], runs: int) -> list[float]:
    """Wall-clock seconds of ``runs`` fresh runs of ``argv`` (after one untimed warm-up run)."""
    subprocess.run(argv, cwd=REPO, capture_output=True, check=True)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, cwd=REPO, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return times


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    runs = 2 if args.quick else 5
    report = Report("cli", args.quick)
    cli = command()
    report.details["command"] = cli
    report.details["runs"] = runs

    python = wall_times([sys.executable, "-c", "pass"], runs)
    report.add("python -c pass (reference)", statistics.median(python), "s")
    help_times = wall_times([*cli, "--help"], runs)
    median = statistics.median(help_times)
    report.add(
        "wake2vec --help (median)", median, "s", f"< {HELP_TARGET_S:g} s", median < HELP_TARGET_S
    )
    plugin_times = wall_times([*cli, "list-plugins"], runs)
    report.add("wake2vec list-plugins (median)", statistics.median(plugin_times), "s")
    probe = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE], cwd=REPO, capture_output=True, text=True, check=True
    )
    heavy = next(
        (line[len("HEAVY=") :] for line in probe.stderr.splitlines() if line.startswith("HEAVY=")),
        "?",
    )
    report.add("heavy modules imported by --help", heavy or "none", "", "none", heavy == "")
    report.details["times"] = {"python": python, "help": help_times, "list_plugins": plugin_times}
    report.write(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
