"""Benchmark: the whole `wake2vec inject` command (load the model, inject the 44,990-word Wake
lexicon, initialise the new rows, write the injection report over 1.5 MB of text that puts every
word after a space and bare) on hub-shaped stand-ins that carry the studied models' own
tokenizer files (Qwen byte-level, Llama-2 SentencePiece) with random tiny weights. The command
runs in its own process; its wall time and peak RSS are measured there. Targets: under 10 s and
800 MiB on 2 cores, coverage 1, no spurious hit, exact round trip, no dead word."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import LEXICON, SKIPPED, Report, parse_args, run_child, timer  # noqa: E402

TARGET_S = 10.0
TARGET_MIB = 800.0
CASES = {"qwen3": "qwen2", "llama2": "llama"}  # real tokenizer -> stand-in (wake2vec.testing)
FULL = {"text_bytes": 1_500_000, "words": None}
QUICK = {"text_bytes": 30_000, "words": 400}

RECIPE = """\
[run]
name = "bench-inject-{name}"
[model]
name = "{model}"
[data]
corpus = "{corpus}"
lexicon = "{lexicon}"
seq_len = 128
[[phases]]
strategy = "embed-only"
steps = 1
learning_rate = 1e-3
"""


def bench_case(report: Report, name: str, key: str, tokenizer_dir: Path, corpus: Path,
               lexicon: Path, tmp: Path) -> None:
    from wake2vec.testing import build_real_stand_in

    tmp.mkdir(parents=True, exist_ok=True)
    model = build_real_stand_in(tmp / key, key, tokenizer_dir)
    slug = name.replace(" ", "-").replace(",", "")
    recipe = tmp / f"{slug}.toml"
    recipe.write_text(RECIPE.format(name=slug, model=model.as_posix(), corpus=corpus.as_posix(),
                                    lexicon=lexicon.as_posix()), encoding="utf-8")
    out = tmp / f"{slug}-report.json"
    with out.open("w", encoding="utf-8") as stdout:
        code, seconds, peak = run_child(
            [sys.executable, "-m", "wake2vec", "inject", str(recipe), "--json"], stdout=stdout)
    if code != 0:
        raise SystemExit(f"wake2vec inject failed on {name} (exit {code})")
    result = json.loads(out.read_text(encoding="utf-8"))
    report.add(f"{name}: whole command", round(seconds, 2), "s", f"< {TARGET_S:g} s",
               seconds < TARGET_S)
    report.add(f"{name}: whole command peak RSS", round(peak), "MiB", f"< {TARGET_MIB:g} MiB",
               peak < TARGET_MIB)
    added = result["added"]
    report.add(f"{name}: words / new ids / trainable rows",
               f"{added['count']} / {added['ids']} / {added['trainable_rows']}")
    report.add(f"{name}: words skipped (one base token)", result["skipped"]["count"])
    coverage = result["coverage"]
    report.add(f"{name}: coverage", coverage if coverage is None else round(coverage, 6), "",
               "== 1", coverage == 1.0)
    spurious = result["spurious_hits"]["count"]
    report.add(f"{name}: spurious hits", spurious, "", "== 0", spurious == 0)
    exact = result["round_trip"]["exact"]
    report.add(f"{name}: round trip exact", exact, "", "== True", exact)
    dead = result["dead_tokens"]["count"]  # every word is placed in the text: none may be dead
    report.add(f"{name}: dead words", dead, "", "== 0", dead == 0)
    report.add(f"{name}: injection / report (in the command)",
               f"{result['embedding']['seconds']:.2f} s init, {result['seconds']:.2f} s report")
    report.details[name] = {
        "wall_s": seconds, "peak_rss_mib": peak,
        "report": {k: result[k] for k in ("added", "coverage", "occurrences", "spurious_hits",
                                          "dead_tokens", "round_trip", "base_agreement",
                                          "token_ratio", "tokenizer_pipeline", "embedding")},
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    report = Report("injection", args.quick)
    if not LEXICON.is_file():
        report.skipped = f"lexicon not found at {LEXICON}"
        print(f"SKIPPED: {report.skipped}")
        report.write(args.json)
        return SKIPPED
    from wake2vec.testing import AssetUnavailable, lexicon_text, real_tokenizer_dir
    from wake2vec.vocab.lexicon import load_lexicon

    try:
        folders = {name: real_tokenizer_dir(name) for name in CASES}
    except AssetUnavailable as exc:
        report.skipped = str(exc)
        print(f"SKIPPED: {report.skipped}")
        report.write(args.json)
        return SKIPPED
    sizes = QUICK if args.quick else FULL
    words = load_lexicon(LEXICON).words[: sizes["words"]]
    report.add("lexicon words", len(words))
    with timer() as t_text:
        text = lexicon_text(words, sizes["text_bytes"])
    report.add("report text size", round(len(text.encode("utf-8")) / 1e6, 3), "MB")
    report.details["text_build_seconds"] = t_text["s"]
    report.details["sizes"] = sizes
    with tempfile.TemporaryDirectory(prefix="wake2vec-bench-") as tmp:
        corpus, lexicon = Path(tmp) / "book.txt", Path(tmp) / "lexicon.txt"
        corpus.write_text(text, encoding="utf-8")
        lexicon.write_text("\n".join(words) + "\n", encoding="utf-8")
        for name, key in CASES.items():
            print(f"[{name}] wake2vec inject on a {key} stand-in with the real {name} tokenizer")
            bench_case(report, name, key, folders[name], corpus, lexicon, Path(tmp))
        if not args.quick:  # what the command costs with almost nothing to inject
            floor = Path(tmp) / "floor-lexicon.txt"
            floor.write_text("\n".join(words[: QUICK["words"]]) + "\n", encoding="utf-8")
            name = f"qwen3, first {QUICK['words']} words"
            print(f"[{name}] the same command with {QUICK['words']} words (its floor)")
            bench_case(report, name, CASES["qwen3"], folders["qwen3"], corpus, floor,
                       Path(tmp) / "floor")
    report.write(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
