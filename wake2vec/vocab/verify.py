"""Verify an injected tokenizer on a text: coverage of the lexicon's whole-word occurrences,
spurious hits, dead words, round trip and agreement with the base tokenizer."""

from __future__ import annotations

import bisect
import difflib
import re
import time
from typing import TYPE_CHECKING, Any

from wake2vec.errors import TrainingError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from wake2vec.api import Injection

SAMPLE = 20  # examples kept in each list of the report
VERIFY_LINES = 8192  # lines encoded at a time by verify_injection (bounds its memory)


_WORD_CHAR = re.compile(r"\w")


_ALL_WORD = re.compile(r"\w+")


_RUN = re.compile(r"\S+")


_STARTS = re.compile(r"(?<!\w)(?=.)", re.S)  # positions a whole word may start at


_ENDS = re.compile(r"(?<=.)(?!\w)", re.S)  # positions a whole word may end at


def joiners(lexicon: set[str]) -> re.Pattern[str] | None:
    """A pattern matching the non-word characters that occur inside lexicon entries (the
    apostrophe of "earwicker's", the hyphen of "phiz-à-phiz"), or None when none do: a run of
    text without them can only hold lexicon words made of word characters alone."""
    found = {c for word in lexicon for c in word if not _WORD_CHAR.match(c)}
    return re.compile("[" + "".join(re.escape(c) for c in sorted(found)) + "]") if found else None


def whole_word_occurrences(
    line: str, lexicon: set[str], max_len: int, joined: re.Pattern[str] | None | bool = True
) -> list[tuple[int, int, str]]:
    """Lexicon words standing as whole words in ``line`` (no word character on either side),
    leftmost-longest and non-overlapping: ``(start, end, word)``.

    ``joined`` is ``joiners(lexicon)``, computed once by a caller that scans many lines; a
    run of text without those characters is then read as its maximal word-character pieces,
    each a whole word (the default, True, scans every run character by character)."""
    found = []
    for run in _RUN.finditer(line):
        text, offset = run.group(), run.start()
        if _ALL_WORD.fullmatch(text):
            if text in lexicon:
                found.append((offset, offset + len(text), text))
            continue
        if joined is not True and (joined is None or not joined.search(text)):
            for piece in _ALL_WORD.finditer(text):
                if piece.group() in lexicon:
                    found.append((offset + piece.start(), offset + piece.end(), piece.group()))
            continue
        starts = [m.start() for m in _STARTS.finditer(text)]  # no word character before
        ends = [m.start() for m in _ENDS.finditer(text)]  # no word character after
        position = 0
        for s in starts:
            if s < position:
                continue
            # longest first, among ends no further than the longest lexicon word
            for k in range(bisect.bisect_right(ends, s + max_len) - 1, -1, -1):
                e = ends[k]
                if e <= s:
                    break
                if text[s:e] in lexicon:
                    found.append((offset + s, offset + e, text[s:e]))
                    position = e
                    break
    return found


def _backend(tokenizer: PreTrainedTokenizerBase) -> Any:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise TrainingError(
            f"verification needs a fast tokenizer; {type(tokenizer).__name__} is not one"
        )
    return backend


def _differing_chars(a: str, b: str) -> int:
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    same = sum(block.size for block in matcher.get_matching_blocks())
    return max(len(a), len(b)) - same


def verify_injection(
    base_tokenizer: PreTrainedTokenizerBase,
    tokenizer: PreTrainedTokenizerBase,
    injection: Injection,
    text: str,
) -> dict[str, Any]:
    """The injection report for ``text``: words added (with their ids and trainable rows),
    skipped and rejected; coverage (share of whole-word lexicon occurrences that encode to
    exactly one new id of that word); spurious hits (new ids where the text is not that whole
    word); dead words (none of the word's ids occurs) and ids never produced; round trip;
    token counts before and after. Lines are encoded a batch at a time by both tokenizers.
    An injection with a ``report_extra(base_tokenizer, tokenizer, text)`` method adds the keys
    it returns (bpe-merges: ``segmentation_changes``, ``bpe_pieces``)."""
    started = time.perf_counter()
    base_backend, backend = _backend(base_tokenizer), _backend(tokenizer)
    word_of: dict[int, str] = {}
    kinds = getattr(injection, "forms", None) or [None] * len(injection.ids)
    for word, new_id, kind in zip(injection.words, injection.ids, kinds, strict=True):
        if kind != "piece":  # bpe-merges' merge intermediates are no lexicon words (see its keys)
            word_of[int(new_id)] = word
    lexicon = set(word_of.values())
    max_len = max((len(w) for w in lexicon), default=0)
    joined = joiners(lexicon)
    forms: dict[str, int] = {}
    for form in getattr(injection, "forms", []) or []:
        forms[form] = forms.get(form, 0) + 1

    lines = text.splitlines(keepends=True) or [""]
    lowest = min(word_of, default=0)
    produced: set[int] = set()
    total = covered = 0
    uncovered: list[str] = []
    spurious: list[str] = []
    spurious_count = 0
    agree_checked = agree_differ = 0
    tokens_before = tokens_after = 0
    differing: list[tuple[str, str]] = []
    base_differing: list[tuple[str, str]] = []
    for start in range(0, len(lines), VERIFY_LINES):  # bounded: the encodings of a batch
        part = lines[start : start + VERIFY_LINES]
        after = backend.encode_batch(part, add_special_tokens=False)
        after_ids = [enc.ids for enc in after]
        before_ids = [enc.ids for enc in base_backend.encode_batch(part, add_special_tokens=False)]
        tokens_after += sum(map(len, after_ids))
        tokens_before += sum(map(len, before_ids))
        decoded = backend.decode_batch(after_ids, skip_special_tokens=False)
        differing += [(line, d) for line, d in zip(part, decoded, strict=True) if line != d]
        decoded = base_backend.decode_batch(before_ids, skip_special_tokens=False)
        base_differing += [(line, d) for line, d in zip(part, decoded, strict=True) if line != d]
        for line, enc, ids, base_ids in zip(part, after, after_ids, before_ids, strict=True):
            hits: dict[tuple[int, int], int] = {}
            if ids and max(ids) >= lowest:
                offsets = enc.offsets
                for k, token_id in enumerate(ids):
                    if token_id >= lowest and token_id in word_of:
                        hits[offsets[k]] = token_id
            if not hits:
                agree_checked += 1
                agree_differ += ids != base_ids
            occurrences = whole_word_occurrences(line, lexicon, max_len, joined) if lexicon else []
            matched: set[tuple[int, int]] = set()
            for s, e, word in occurrences:
                total += 1
                span = (s, e) if (s, e) in hits else (s - 1, e)
                if (
                    span in hits
                    and word_of[hits[span]] == word
                    and (span[0] == s or line[s - 1] == " ")
                ):
                    covered += 1
                    matched.add(span)
                elif len(uncovered) < SAMPLE:
                    uncovered.append(line[max(0, s - 20) : e + 20].strip())
            for span, token_id in hits.items():
                produced.add(token_id)
                if span not in matched:
                    spurious_count += 1
                    if len(spurious) < SAMPLE:
                        spurious.append(f"{word_of[token_id]!r} in "
                                        f"{line[max(0, span[0] - 20) : span[1] + 20].strip()!r}")

    dead_ids = [i for i in word_of if i not in produced]
    seen_words = {word_of[i] for i in produced}
    ids_of: dict[str, list[int]] = {}
    for i, word in word_of.items():
        ids_of.setdefault(word, []).append(i)
    dead_words = [w for w in ids_of if w not in seen_words]  # no id of the word occurs
    report = {
        "added": {"count": len(lexicon), "ids": len(word_of),
                  "trainable_rows": len(injection.row_ids()), "forms": forms},
        "skipped": {"count": len(injection.skipped), "items": [list(x) for x in injection.skipped]},
        "rejected": {
            "count": len(injection.rejected),
            "items": [list(x) for x in injection.rejected],
        },
        "coverage": (covered / total) if total else None,
        "occurrences": {"total": total, "covered": covered, "uncovered_sample": uncovered},
        "spurious_hits": {"count": spurious_count, "sample": spurious},
        # per word: a word is dead when the text produces none of its ids (a bare form that
        # never occurs is no dead row: it reads the row its space form trains)
        "dead_tokens": {
            "count": len(dead_words),
            "words": len(dead_words),
            "share": (len(dead_words) / len(ids_of)) if ids_of else 0.0,
            "ids": len(dead_ids),
            "id_share": (len(dead_ids) / len(word_of)) if word_of else 0.0,
            "sample": [
                f"{w!r} (ids {', '.join(f'{i} {tokenizer.convert_ids_to_tokens(i)!r}' for i in ids_of[w])})"
                for w in dead_words[:SAMPLE]
            ],
        },
        "round_trip": {
            "exact": not differing,
            "differing_lines": len(differing),
            "differing_chars": sum(_differing_chars(a, b) for a, b in differing),
            "sample": [repr(a[:80]) for a, _ in differing[:5]],
            "base_exact": not base_differing,
            "base_differing_chars": sum(_differing_chars(a, b) for a, b in base_differing),
        },
        "base_agreement": {"lines_without_new_ids": agree_checked, "differing": agree_differ},
        "tokens_before": tokens_before,
        "tokens_after": tokens_after,
        "token_ratio": (tokens_after / tokens_before) if tokens_before else None,
        "text_chars": len(text),
        "tokenizer_pipeline": getattr(injection, "pipeline", None),
    }
    extra = getattr(injection, "report_extra", None)  # an injector's own keys, e.g. bpe-merges'
    if callable(extra):  # "segmentation_changes"
        report.update(extra(base_tokenizer, tokenizer, text))
    report["seconds"] = round(time.perf_counter() - started, 3)
    return report
