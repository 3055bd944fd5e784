"""Run the wake2vec benchmarks side by side, each in its own subprocess (so peak memory is per
benchmark), print one table and write one JSON file with the machine's facts.

    python benchmarks/run.py [--quick] [--only NAME ...] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import SKIPPED, cpu_facts, run_child  # noqa: E402

BENCHMARKS = {
    "cli": "bench_cli.py",
    "injection": "bench_injection.py",
    "initializers": "bench_initializers.py",
    "analysis": "bench_analysis.py",
    "p1": "bench_p1.py",
    "p2": "bench_p2.py",
    "scaling": "bench_scaling.py",
    "real-model": "bench_real_model.py",
}
VERSIONED = ("wake2vec", "torch", "transformers", "tokenizers")


def machine_facts() -> dict[str, Any]:
    """CPU count and model, load, Python and library versions (read without importing them)."""
    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        **cpu_facts(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "torch_version": versions["torch"],
    }


def run(names: list[str], quick: bool, workdir: Path) -> dict[str, Any]:
    """Run the named benchmarks one after another and collect their reports."""
    results: dict[str, Any] = {}
    for name in names:
        out = workdir / f"{name}.json"
        argv = [sys.executable, str(HERE / BENCHMARKS[name]), "--json", str(out)]
        if quick:
            argv.append("--quick")
        print(f"== {name}", flush=True)
        code, seconds, peak = run_child(argv)
        status = "ok" if code == 0 else "skipped" if code == SKIPPED else f"failed (exit {code})"
        report = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else None
        results[name] = {
            "status": status,
            "exit_code": code,
            "wall_s": round(seconds, 3),
            "peak_rss_mib": round(peak, 1),
            "report": report,
        }
        print(f"== {name}: {status}, {seconds:.1f} s, peak RSS {peak:.0f} MiB", flush=True)
    return results


def _shown(value: Any, unit: str) -> str:
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return f"{text} {unit}".strip()


def table(results: dict[str, Any]) -> str:
    """A plain-text table: benchmark, measure, value, target, met."""
    lines = [("benchmark", "measure", "value", "target", "met?")]
    for name, result in results.items():
        lines.append((name, "(process) wall time", f"{result['wall_s']:.1f} s", "", ""))
        lines.append((name, "(process) peak RSS", f"{result['peak_rss_mib']:.0f} MiB", "", ""))
        report = result["report"] or {}
        if result["status"] != "ok":
            reason = report.get("skipped") or result["status"]
            lines.append((name, "status", reason, "", ""))
        for row in report.get("rows", []):
            met = "" if row["met"] is None else ("yes" if row["met"] else "NO")
            lines.append(
                (name, row["measure"], _shown(row["value"], row["unit"]), row["target"], met)
            )
    widths = [max(len(str(line[i])) for line in lines) for i in range(5)]
    rendered = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]
    rendered.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(rendered)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        nargs="+",
        choices=sorted(BENCHMARKS),
        metavar="NAME",
        help=f"run only these ({', '.join(BENCHMARKS)})",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument(
        "--json", metavar="PATH", help="write the results here (default: a file in the temp dir)"
    )
    args = parser.parse_args(argv)
    names = [n for n in BENCHMARKS if not args.only or n in args.only]
    started = datetime.now(timezone.utc)
    facts = machine_facts()
    with tempfile.TemporaryDirectory(prefix="wake2vec-bench-") as tmp:
        results = run(names, args.quick, Path(tmp))
    facts["load_average_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    print()
    print(table(results))
    rows = [row for r in results.values() for row in ((r["report"] or {}).get("rows", []))]
    judged = [row for row in rows if row["met"] is not None]
    met = sum(1 for row in judged if row["met"])
    failed = [n for n, r in results.items() if r["status"].startswith("failed")]
    print(f"\ntargets met: {met}/{len(judged)}; failed benchmarks: {', '.join(failed) or 'none'}")
    cpu = facts["cpu_model"] or "unknown CPU"
    print(
        f"machine: {facts['cpu_usable']} usable CPUs ({cpu}); load average before "
        f"{facts['load_average']}, after {facts['load_average_after']}"
    )
    path = (
        Path(args.json) if args.json else Path(tempfile.gettempdir()) / "wake2vec-benchmarks.json"
    )
    payload = {
        "started": started.isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "quick": args.quick,
        "machine": facts,
        "benchmarks": results,
        "rows": rows,
        "targets": {"judged": len(judged), "met": met},
    }
    path.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    print(f"results written to {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
