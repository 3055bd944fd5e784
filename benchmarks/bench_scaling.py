"""Benchmark: how the cost of a P1 step grows, so a user can read off what a larger model costs.

wake2vec's P1 at the precision this machine runs faster (bf16 frozen weights with fp32 trainable
rows where bf16 matrix products beat fp32 ones, as on CPUs with AVX512-BF16 or AMX and on GPUs;
fp32 otherwise; the choice and both peaks are in the report) on a 2-layer Llama at hidden 2048
with the new ids and trainable rows the whole-word injector gives the 44,990-word lexicon on
TinyLlama's real tokenizer (about 89,000 ids, 44,700 rows), batch 4: the base vocabulary at 32K, 128K
and 152K (TinyLlama/Llama-2, Llama-3, Qwen2.5 sizes) at sequence 256, and the sequence at 128,
256 and 512 with the 32K vocabulary. Each size runs in its own processes (one builds the model,
one trains it), so each peak RSS is that size's own. Reported: median step time after the first,
tokens/s, peak RSS, and the step's matrix FLOPs (as ``bench_p1.step_flops`` counts them).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_p1 import spawn, step_flops, vocabulary_or_skip  # noqa: E402
from common import SKIPPED, Report, cpu_facts, parse_args  # noqa: E402

SHAPE = {"hidden": 2048, "intermediate": 5632, "layers": 2, "heads": 32, "kv_heads": 4,
         "batch": 4, "steps": 3}  # the new ids and rows: the injector's, as in bench_p1
SIZES = {  # label: (base rows, sequence length)
    "32K base, seq 256": (32000, 256),
    "128K base, seq 256": (128000, 256),
    "152K base, seq 256": (152000, 256),
    "32K base, seq 128": (32000, 128),
    "32K base, seq 512": (32000, 512),
}
QUICK_SHAPE = {"hidden": 32, "intermediate": 64, "layers": 2, "heads": 4, "kv_heads": 4,
               "new": 300, "rows": 300, "batch": 2, "steps": 3}
QUICK_SIZES = {"500 base, seq 32": (500, 32), "2000 base, seq 64": (2000, 64)}


def faster_precision() -> tuple[str, dict[str, float]]:
    """The P1 variant whose frozen-weight precision has the higher matrix-product peak here,
    measured on small products in a child process (this one imports no torch)."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from bench_p1 import matmul_peaks; "
            "print(json.dumps(matmul_peaks(2, small=True)))")
    out = subprocess.run([sys.executable, "-c", code, str(Path(__file__).resolve().parent)],
                         capture_output=True, text=True, check=True)
    peaks = json.loads(out.stdout.strip().splitlines()[-1])
    return ("wake2vec-bf16" if peaks["bfloat16"] > peaks["float32"] else "wake2vec-fp32"), peaks


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    shape, sizes = (QUICK_SHAPE, QUICK_SIZES) if args.quick else (SHAPE, SIZES)
    report = Report("scaling", args.quick)
    report.details.update(shape=shape, machine_before=cpu_facts(), results={})
    variant, peaks = faster_precision()
    report.details["peaks_gflops"] = peaks
    report.add("precision used (the faster matrix products here)", variant.split("-")[1], "",
               "")
    report.add("matrix-product peak fp32 / bf16", f"{peaks['float32']:.0f} / {peaks['bfloat16']:.0f}",
               "GFLOP/s")
    with tempfile.TemporaryDirectory(prefix="wake2vec-bench-scaling-") as tmp:
        if not args.quick:
            if vocabulary_or_skip(report, Path(tmp)):
                report.write(args.json)
                return SKIPPED
            found = report.details["vocabulary"]
            shape = {**shape, "new": found["new"], "rows": found["rows"],
                     "aliases_file": found["aliases_file"]}
        measured = ["bfloat16" if variant.endswith("bf16") else "float32"]  # the precision run
        for label, (base, seq) in sizes.items():
            case = {**shape, "base": base, "seq": seq, "peak_dtypes": measured}
            model_dir = Path(tmp) / "model"
            spawn("build", case, model_dir, Path(tmp) / "build.json")
            found: dict[str, Any] = spawn(variant, case, model_dir, Path(tmp) / "run.json")
            steady = sorted(found["step_s"][1:] or found["step_s"])
            step_s = steady[len(steady) // 2]
            flops = step_flops(case)["total"]
            report.details["results"][label] = {"case": case, **found, "median_step_s": step_s}
            report.add(f"{label}: step", round(step_s, 3), "s")
            report.add(f"{label}: tokens/s", round(case["batch"] * seq / step_s, 1), "tok/s")
            report.add(f"{label}: peak RSS", round(found["peak_rss_mib"]), "MiB")
            report.add(f"{label}: matrix FLOPs per step", round(flops / 1e9, 3), "GFLOP")
            for path in model_dir.glob("*"):  # the next size builds its own
                path.unlink()
    report.details["machine_after"] = cpu_facts()
    report.write(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
