"""What the ``bpe-merges`` injector changes in base text: every word outside the lexicon whose
pieces differ after injection (a new merge firing inside it), for the injection report."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

SAMPLE = 20  # changed words listed in the report
_RUN = re.compile(r"\S+")


def segmentation_changes(
    base_tokenizer: PreTrainedTokenizerBase,
    tokenizer: PreTrainedTokenizerBase,
    lexicon: set[str],
    text: str,
) -> dict[str, Any]:
    """Every whitespace-delimited run of ``text`` with no whole-word lexicon occurrence that
    the injected tokenizer cuts differently from the base one: ``{"count": occurrences,
    "distinct": runs, "runs_checked": n, "items": [{"word", "before", "after", "count"}]}``
    (all changed runs, most frequent first; each run is compared in its own line)."""
    from wake2vec.vocab.verify import whole_word_occurrences

    lines = text.splitlines(keepends=True) or [""]
    base = base_tokenizer.backend_tokenizer.encode_batch(lines, add_special_tokens=False)
    new = tokenizer.backend_tokenizer.encode_batch(lines, add_special_tokens=False)
    max_len = max((len(w) for w in lexicon), default=0)
    changed: dict[tuple[str, tuple[str, ...], tuple[str, ...]], int] = {}
    checked = 0
    for line, enc_base, enc_new in zip(lines, base, new, strict=True):
        runs = [(m.start(), m.end()) for m in _RUN.finditer(line)]
        before, after = _by_run(runs, enc_base), _by_run(runs, enc_new)
        for index, (s, e) in enumerate(runs):
            word = line[s:e]
            if lexicon and whole_word_occurrences(word, lexicon, max_len):
                continue
            checked += 1
            if before[index] != after[index]:
                key = (word, tuple(before[index]), tuple(after[index]))
                changed[key] = changed.get(key, 0) + 1
    items = sorted(changed.items(), key=lambda kv: (-kv[1], kv[0][0]))
    return {
        "count": sum(changed.values()),
        "distinct": len(changed),
        "runs_checked": checked,
        "items": [
            {"word": w, "before": list(b), "after": list(a), "count": c} for (w, b, a), c in items
        ],
    }


def _by_run(runs: list[tuple[int, int]], enc: Any) -> list[list[str]]:
    """The tokens of each run (a token belongs to the run holding its last character, or to
    the next run when that character is a space)."""
    import bisect

    starts = [s for s, _ in runs]
    out: list[list[str]] = [[] for _ in runs]
    for token, (s, e) in zip(enc.tokens, enc.offsets, strict=True):
        if e <= s:
            continue
        index = bisect.bisect_right(starts, e - 1) - 1
        if index < 0 or e - 1 >= runs[index][1]:
            index += 1
        if 0 <= index < len(runs):
            out[index].append(token)
    return out
