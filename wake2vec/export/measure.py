"""What a GGUF's tokenizer does with a text, measured in llama.cpp against the run: coverage of
the lexicon occurrences the run trained, spurious new ids by cause, and lines without lexicon
words against the base model's own GGUF."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from wake2vec.export.plan import MERGES, USER_DEFINED, WHOLE, Plan

CAUSES = {
    "piece": "a chain's intermediate piece left inside a longer word",
    MERGES: "a word's chain completed inside a longer word",
    USER_DEFINED: "a user-defined token matched inside other text",
    WHOLE: "a whole-chunk word where the run's tokenizer has none",
}
SAMPLE = 8


def measure(lines: list[str], reference: Callable[[list[str]], Iterable[list[int]]],
            exported: Callable[[str], list[int]], base: Callable[[str], list[int]],
            plan: Plan, new_ids: set[int], progress: Callable[[int], None] | None = None,
            ) -> dict[str, Any]:
    """Tokenise every non-empty line (after a newline) three ways: ``reference`` (the run's own tokenizer, in
    batches), ``exported`` and ``base`` (llama.cpp with the exported and the base GGUF).

    An occurrence is a new id the run's tokenizer produces; it is covered when llama.cpp
    produces the same id in the same line (counted as a multiset). Every other new id (a word's
    or a piece's) llama.cpp produces is spurious. A line whose run tokenization has no new id
    is a line without lexicon words; it should tokenise exactly as with the base GGUF.
    """
    # each line as it stands in a text, after a newline: at the very start of a text llama.cpp's
    # SentencePiece adds a space (the word takes its after-a-space id), once per text
    texts = ["\n" + line for line in lines if line.strip()]
    how = {f.id: f.how for f in plan.forms}
    word = {f.id: f.word for f in plan.forms}
    pieces = set(plan.pieces)
    watched = new_ids | pieces
    occurrences = covered = words = plain = plain_same = same_as_run = 0
    spurious: Counter[str] = Counter()
    samples: dict[str, list[str]] = {c: [] for c in CAUSES}
    missed: Counter[str] = Counter()
    for start in range(0, len(texts), 512):
        batch = texts[start : start + 512]
        for line, ref in zip(batch, reference(batch), strict=True):
            got = exported(line)
            words += len(line.split())
            want = Counter(i for i in ref if i in new_ids)
            have = Counter(i for i in got if i in watched)
            occurrences += sum(want.values())
            hit = want & have
            covered += sum(hit.values())
            same_as_run += got == list(ref)
            for i, n in (want - hit).items():
                missed[word.get(i, str(i))] += n
            for i, n in (have - hit).items():
                cause = "piece" if i in pieces else how.get(i) or MERGES
                spurious[cause] += n
                if len(samples[cause]) < SAMPLE:
                    samples[cause].append(line.strip()[:120])
            if not want:
                plain += 1
                plain_same += got == base(line)
        if progress is not None:
            progress(len(batch))
    total_spurious = sum(spurious.values())
    return {
        "lines": len(texts),
        "words": words,
        "occurrences": occurrences,
        "covered": covered,
        "coverage": covered / occurrences if occurrences else 1.0,
        "missed_sample": [f"{w} x{n}" for w, n in missed.most_common(SAMPLE)],
        "spurious": total_spurious,
        "spurious_share_of_words": total_spurious / words if words else 0.0,
        "spurious_by_cause": {c: {"count": spurious[c], "about": CAUSES[c], "sample": samples[c]}
                              for c in CAUSES},
        "lines_without_lexicon_words": plain,
        "identical_to_base": plain_same,
        "identical_to_base_share": plain_same / plain if plain else 1.0,
        "lines_identical_to_run": same_as_run,
    }


def table(result: dict[str, Any], forms: dict[str, int]) -> list[tuple[str, str]]:
    """The figures a person reads, as (label, value) rows."""
    by_cause = result["spurious_by_cause"]
    rows = [
        ("forms exported (whole chunks / merges / user-defined / not)",
         f"{forms.get(WHOLE, 0)} / {forms.get(MERGES, 0)} / {forms.get(USER_DEFINED, 0)} / "
         f"{forms.get('', 0)}"),
        ("intermediate pieces added", str(forms.get("pieces", 0))),
        ("lines measured", f"{result['lines']:,} ({result['words']:,} words)"),
        ("lexicon occurrences covered",
         f"{result['covered']:,} / {result['occurrences']:,} = {result['coverage']:.4f}"),
        ("spurious new ids",
         f"{result['spurious']:,} = {100 * result['spurious_share_of_words']:.3f}% of words"),
    ]
    rows += [(f"  {cause}", str(by_cause[cause]["count"])) for cause in CAUSES]
    rows.append(("lines without lexicon words identical to base",
                 f"{result['identical_to_base']:,} / {result['lines_without_lexicon_words']:,} = "
                 f"{100 * result['identical_to_base_share']:.2f}%"))
    rows.append(("lines tokenised as the run's tokenizer does",
                 f"{result['lines_identical_to_run']:,} / {result['lines']:,}"))
    return rows
