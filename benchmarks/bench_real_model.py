"""Benchmark: a real pretrained model, SmolLM2-135M-Instruct from its Q4_1 GGUF (the test
cache's copy, `python -m wake2vec.testing fetch`), through the whole `wake2vec run` command in
its own process.

1. The laptop recipe, `recipes/smollm2_real.toml`: three phases on the bundled demo data with
   both baselines and the control run; wall time and peak RSS (targets: under 10 minutes and
   3 GiB on 2 cores), with bits per byte of the untouched model, step 0, each phase and the
   control side by side.
2. Memory of a book-length run: the 44,990-word Wake lexicon over 1.5 MB of text, P1 then P2 at
   batch 4 x 256 in fp32 with gradient checkpointing; peak RSS of the whole command (target:
   under 4 GiB) and each phase's peaks as the run records them.

--quick runs the laptop recipe cut to one step per phase without its control, and no
book-length run."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import LEXICON, REPO, SKIPPED, Report, parse_args, run_child  # noqa: E402

RECIPE = REPO / "recipes" / "smollm2_real.toml"
LAPTOP_S, LAPTOP_MIB, BOOK_MIB = 600.0, 3072.0, 4096.0
QUICK_SETS = ["phases[0].steps=1", "phases[0].warmup_steps=0", "phases[0].eval_every=0",
              "phases[1].steps=1", "phases[1].warmup_steps=0", "phases[1].eval_every=0",
              "phases[2].steps=1", "phases[2].eval_every=0", "data.validation_fraction=0.01",
              "analysis.generation.enabled=false", 'analysis.metrics=["drift"]',
              "run.control=false"]  # the control is the whole recipe again: tested on the demo

BOOK = """\
[run]
name = "bench-book-memory"
seed = 1
[model]
name = "{model}"
dtype = "float32"
[data]
corpus = "{corpus}"
lexicon = "{lexicon}"
seq_len = 256
validation_fraction = 0.02
[injection]
initializer = "subword-mean"
[analysis]
baselines = false
generation = {{ temperatures = [0.7], max_new_tokens = 20 }}
[[phases]]
name = "p1"
strategy = "embed-only"
steps = 3
learning_rate = 2e-3
batch_size = 4
eval_batches = 2
gradient_checkpointing = true
[[phases]]
name = "p2"
strategy = "lora"
steps = 3
learning_rate = 5e-4
batch_size = 4
eval_batches = 2
gradient_checkpointing = true
"""


def _run(argv: list[str], log: Path) -> tuple[float, float]:
    with log.open("w", encoding="utf-8") as out:
        code, seconds, peak = run_child([sys.executable, "-m", "wake2vec", *argv], stdout=out)
    if code != 0:
        raise SystemExit(f"wake2vec {' '.join(argv)} failed (exit {code}); see {log}")
    return seconds, peak


def _bpb(evaluation: dict | None) -> float | None:
    value = (evaluation or {}).get("bits_per_byte")
    return round(value, 4) if isinstance(value, (int, float)) else None


def laptop(report: Report, model: Path, tmp: Path, quick: bool) -> None:
    run_dir = tmp / "smollm2-real"
    sets = [f"model.name={json.dumps(str(model))}"] + (QUICK_SETS if quick else [])
    argv = ["run", str(RECIPE), "--output-dir", str(run_dir)]
    for item in sets:
        argv += ["--set", item]
    print(f"[laptop] wake2vec run {RECIPE.name}{' (quick)' if quick else ''}")
    seconds, peak = _run(argv, tmp / "laptop.log")
    report.add("laptop recipe: whole command (run + control)", round(seconds, 1), "s",
               f"< {LAPTOP_S:g} s", seconds < LAPTOP_S)
    report.add("laptop recipe: peak RSS", round(peak), "MiB", f"< {LAPTOP_MIB:g} MiB",
               peak < LAPTOP_MIB)
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    baselines, control = manifest.get("baselines") or {}, manifest.get("control") or {}
    report.add("bits per byte: untouched model", _bpb(baselines.get("base")))
    report.add("bits per byte: injected, step 0", _bpb(baselines.get("injected")))
    for name, record in manifest["phases"].items():
        theirs = _bpb((control.get("phases") or {}).get(name))
        report.add(f"bits per byte after {name} (control)",
                   f"{_bpb(record.get('evaluation'))} ({theirs if theirs is not None else '-'})")
        peaks = record.get("peak_memory") or {}
        report.add(f"{name} peak RSS training / analysis",
                   f"{(peaks.get('training') or {}).get('rss_mib')} / "
                   f"{(peaks.get('analysis') or {}).get('rss_mib')}", "MiB")
    report.details["laptop"] = {"wall_s": seconds, "peak_rss_mib": peak,
                                "baselines": baselines, "control": control,
                                "phases": {n: r.get("evaluation") for n, r in manifest["phases"].items()},
                                "peak_memory": {n: r.get("peak_memory")
                                                for n, r in manifest["phases"].items()}}


def book(report: Report, model: Path, tmp: Path) -> None:
    from wake2vec.testing import lexicon_text
    from wake2vec.vocab.lexicon import load_lexicon

    words = load_lexicon(LEXICON).words
    corpus = tmp / "book.txt"
    corpus.write_text(lexicon_text(words, 1_500_000), encoding="utf-8")
    recipe = tmp / "book.toml"
    recipe.write_text(BOOK.format(model=model.as_posix(), corpus=corpus.as_posix(),
                                  lexicon=LEXICON.as_posix()), encoding="utf-8")
    run_dir = tmp / "book-run"
    print(f"[book] {len(words)} words over 1.5 MB, P1 then P2 at batch 4 x 256, fp32")
    seconds, peak = _run(["run", str(recipe), "--output-dir", str(run_dir)], tmp / "book.log")
    report.add("book-length P1 + P2: peak RSS", round(peak), "MiB", f"< {BOOK_MIB:g} MiB",
               peak < BOOK_MIB)
    report.add("book-length P1 + P2: whole command", round(seconds, 1), "s")
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    report.add("book-length: load + inject peak RSS",
               (manifest.get("peak_memory") or {}).get("prepare", {}).get("rss_mib"), "MiB")
    for name, record in manifest["phases"].items():
        peaks = record.get("peak_memory") or {}
        report.add(f"book-length {name} peak RSS training / analysis",
                   f"{(peaks.get('training') or {}).get('rss_mib')} / "
                   f"{(peaks.get('analysis') or {}).get('rss_mib')}", "MiB")
    report.details["book"] = {"wall_s": seconds, "peak_rss_mib": peak,
                              "rows": manifest.get("model", {}).get("rows"),
                              "prepare": (manifest.get("peak_memory") or {}).get("prepare"),
                              "phases": {n: r.get("peak_memory")
                                         for n, r in manifest["phases"].items()}}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    report = Report("real-model", args.quick)
    from wake2vec.testing import AssetUnavailable, smollm2_gguf

    try:
        model = smollm2_gguf()
    except AssetUnavailable as exc:
        report.skipped = str(exc)
        print(f"SKIPPED: {report.skipped}")
        report.write(args.json)
        return SKIPPED
    with tempfile.TemporaryDirectory(prefix="wake2vec-bench-real-") as tmp:
        laptop(report, model, Path(tmp), args.quick)
        if not args.quick:
            if not LEXICON.is_file():
                print(f"book-length run left out: no lexicon at {LEXICON}")
            else:
                book(report, model, Path(tmp))
    report.write(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
