"""Benchmark: whole-word injection of the 44,990-word Wake lexicon into a SentencePiece-style and a
byte-level tokenizer (both trained here on English-like text), and the injection report over about
1.5 MB of text that uses the lexicon words in every context. Target: injection plus report in
under 10 s; spurious hits 0; round trip exact."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    LEXICON,
    SKIPPED,
    TOKENIZERS,
    Report,
    english_text,
    parse_args,
    timer,
)

TARGET_S = 10.0
FULL = {
    "vocab": {"spm": 32000, "byte-level": 32000},
    "train_chars": 4_000_000,
    "text_bytes": 1_500_000,
}
QUICK = {"vocab": {"spm": 1200, "byte-level": 1200}, "train_chars": 60_000, "text_bytes": 30_000}
QUICK_WORDS = 400


def mixed_text(lexicon: list[str], target_bytes: int, seed: int = 1) -> str:
    """Lines mixing ordinary English words and lexicon words (``wake2vec.testing.lexicon_text``):
    every lexicon word once after a space and once bare; lexicon words are 60% of the words."""
    from wake2vec.testing import lexicon_text

    return lexicon_text(lexicon, target_bytes, seed)


def bench_tokenizer(
    report: Report, kind: str, words: list[str], train: str, text: str, vocab: int, tmp: Path
) -> None:
    from wake2vec_plugins.injectors.whole_word import WholeWord

    from wake2vec.injection import verify_injection

    print(f"[{kind}] training a {vocab}-entry tokenizer on {len(train) / 1e6:.1f} MB")
    with timer() as t_train:
        base = TOKENIZERS[kind](tmp / kind, train, vocab)
    report.add(f"{kind}: tokenizer training (not in target)", t_train["s"], "s")
    report.add(f"{kind}: base vocabulary", len(base))
    with timer() as t_inject:
        injection = WholeWord().inject(base, words)
    with timer() as t_verify:
        result = verify_injection(base, injection.tokenizer, injection, text)
    total = t_inject["s"] + t_verify["s"]
    report.add(f"{kind}: injection", t_inject["s"], "s")
    report.add(f"{kind}: injection report", t_verify["s"], "s")
    report.add(f"{kind}: injection + report", total, "s", f"< {TARGET_S:g} s", total < TARGET_S)
    report.add(f"{kind}: words added", result["added"]["count"])
    report.add(f"{kind}: words skipped (one base token)", result["skipped"]["count"])
    report.add(f"{kind}: words rejected", result["rejected"]["count"])
    spurious = result["spurious_hits"]["count"]
    report.add(f"{kind}: spurious hits", spurious, "", "== 0", spurious == 0)
    exact = result["round_trip"]["exact"]
    report.add(f"{kind}: round trip exact", exact, "", "== True", exact)
    coverage = result["coverage"]
    report.add(f"{kind}: coverage", coverage if coverage is None else round(coverage, 6))
    report.add(f"{kind}: lexicon occurrences in text", result["occurrences"]["total"])
    dead = result["dead_tokens"]["count"]  # every word is placed in the text: none may be dead
    report.add(f"{kind}: dead words", dead, "", "== 0", dead == 0)
    report.add(f"{kind}: token ratio after/before", round(result["token_ratio"], 4))
    report.details[kind] = {
        "vocab_size": len(base),
        "train_seconds": t_train["s"],
        "inject_seconds": t_inject["s"],
        "verify_seconds": t_verify["s"],
        "report": {
            key: result[key]
            for key in (
                "added",
                "coverage",
                "occurrences",
                "spurious_hits",
                "round_trip",
                "base_agreement",
                "tokens_before",
                "tokens_after",
                "token_ratio",
                "text_chars",
            )
        }
        | {"dead_tokens": result["dead_tokens"]},
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    report = Report("injection", args.quick)
    if not LEXICON.is_file():
        report.skipped = f"lexicon not found at {LEXICON}"
        print(f"SKIPPED: {report.skipped}")
        report.write(args.json)
        return SKIPPED
    from wake2vec.lexicon import load_lexicon

    sizes = QUICK if args.quick else FULL
    with timer() as t_load:
        words = load_lexicon(LEXICON).words
    if args.quick:
        words = words[:QUICK_WORDS]
    report.add("lexicon words", len(words))
    report.add("lexicon load", t_load["s"], "s")
    with timer() as t_text:
        train = english_text(sizes["train_chars"], seed=0)
        text = mixed_text(words, sizes["text_bytes"])
    report.add("report text size", round(len(text.encode("utf-8")) / 1e6, 3), "MB")
    report.details["text_build_seconds"] = t_text["s"]
    report.details["sizes"] = sizes
    with tempfile.TemporaryDirectory(prefix="wake2vec-bench-") as tmp:
        for kind in ("spm", "byte-level"):
            bench_tokenizer(report, kind, words, train, text, sizes["vocab"][kind], Path(tmp))
    report.write(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
