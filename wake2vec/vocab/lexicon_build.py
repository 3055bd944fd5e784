"""Mine a lexicon from a text: the word types that general English does not know.

Word types are runs of letters (accented letters and combining marks included) joined by
internal apostrophes (``'`` or ``’``) or hyphens, lower-cased: ``o'wetnarrow``,
``fall-gardeepy``, ``générations``. Digits, underscores and punctuation separate words.

Each type gets its count in the text, its Zipf frequency in general English
(``wordfreq.zipf_frequency(word, "en")``, offline; 0 for unknown words) and a **score**: how many
orders of magnitude more frequent it is in the text than in English,
``log10(count / tokens * 1e9) - zipf`` (both sides on the Zipf scale, log10 per billion words).

A type is kept unless, checked in this order, it is

``too_short``  shorter than ``min_length`` characters;
``rare``       seen fewer than ``min_count`` times (default 1: a coinage the text uses once is
               kept, as most of the study's 44,990 words are; 2 keeps recurring words only);
``stopword``   in the stop-word list;
``common``     above the Zipf ceiling (ordinary English);
``fragment``   a truncated piece of a common English word (rule below).

**Fragments.** OCR and hyphenation leave pieces of ordinary words as standalone "words"
(``wher``, ``throug``, ``befor``, ``thos``, ``nig``, ``hing``). A candidate is dropped as a
fragment of a longer *host* type in the same text when all of these hold:

1. the host contains the candidate and is 1 to ``fragment_max_extra`` (2) letters longer, the
   extra characters being letters (``wher`` < ``where``, ``nig`` < ``night``, ``hing`` < ``thing``);
2. the host is ordinary English, Zipf >= ``fragment_host_zipf`` (3.0, about once per million words);
3. the host is far more frequent in this text: count(host) >= ``fragment_ratio`` (5) x count(candidate).

Condition 2 protects coinages whose longer relatives are coinages too; condition 3 protects a
coinage that happens to be a common word minus a letter but is used in its own right.

Results are deterministic: candidates sorted by score (highest first), then by word.
"""

from __future__ import annotations

import csv
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from wake2vec.errors import DataError

TOO_SHORT, RARE, STOPWORD, COMMON, FRAGMENT = "too_short", "rare", "stopword", "common", "fragment"
REASONS = (TOO_SHORT, RARE, STOPWORD, COMMON, FRAGMENT)
CSV_COLUMNS = ("word", "count", "zipf", "score", "length", "kept", "reason", "note")

_MARKS = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
_RUN = rf"(?:[^\W\d_][{_MARKS}]*)+"
WORD_PATTERN = re.compile(rf"{_RUN}(?:['\u2019-]{_RUN})*")

# A small list of English function words; most are far above any sensible Zipf ceiling anyway,
# but the list keeps them out when the ceiling is raised, and covers archaic forms.
DEFAULT_STOPWORDS: frozenset[str] = frozenset(
    """
    a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each either else ever
    every few for from further had has have having he her here hers herself him himself his how i
    if in into is it its itself just me more most my myself neither no nor not now of off on once
    only or other ought our ours ourselves out over own same shall she should so some such than
    that the their theirs them themselves then there these they this those through thus till to
    too under until unto up upon very was we were what when where whether which while who whom
    whose why will with within without would yet you your yours yourself yourselves
    thee thou thy thine ye hath doth art shalt wilt whilst amongst betwixt ere nay
    """.split()  # noqa: SIM905 (a block of words reads better than a list literal)
)


@dataclass(frozen=True)
class Candidate:
    """One word type of the text and what the filters decided about it."""

    word: str
    count: int
    zipf: float
    score: float
    kept: bool
    reason: str = ""  # one of REASONS when dropped
    note: str = ""  # for fragments: the host word and its count

    @property
    def length(self) -> int:
        return len(self.word)


@dataclass
class LexiconBuild:
    """The kept words (in output order) and one row per candidate type for the audit CSV."""

    words: list[str]
    rows: list[Candidate]
    tokens: int  # word tokens in the text
    settings: dict[str, object] = field(default_factory=dict)

    def dropped(self) -> dict[str, int]:
        """Dropped candidates per reason, every reason listed (zero included), in check order."""
        counts = Counter(row.reason for row in self.rows if not row.kept)
        return {reason: counts.get(reason, 0) for reason in REASONS}

    def summary(self) -> str:
        """One line: candidates, kept, and dropped by reason."""
        dropped = ", ".join(f"{reason} {n}" for reason, n in self.dropped().items())
        return f"{len(self.rows)} candidates, {len(self.words)} kept; dropped: {dropped}"

    def table(self, examples: int = 3) -> str:
        """Kept and dropped counts by reason, a few words of each, as lines to print."""
        rows = [("kept", len(self.words), [r.word for r in self.rows if r.kept][:examples])]
        for reason in REASONS:
            found = [r.word for r in self.rows if not r.kept and r.reason == reason]
            rows.append((f"dropped: {reason}", len(found), found[:examples]))
        width = max(len(label) for label, _, _ in rows)
        digits = max(len(f"{n:,}") for _, n, _ in rows)
        lines = [f"{'':{width}}  {'words':>{digits}}  examples"]
        lines += [f"{label:{width}}  {n:>{digits},}  {', '.join(words)}" for label, n, words in rows]
        lines.append(f"{'candidates':{width}}  {len(self.rows):>{digits},}")
        return "\n".join(lines)

    def write_words(self, stream: IO[str]) -> None:
        """One kept word per line."""
        stream.writelines(f"{word}\n" for word in self.words)

    def write_csv(self, stream: IO[str]) -> None:
        """Every candidate with its count, Zipf, score, length, decision, reason and note."""
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for row in self.rows:
            writer.writerow([row.word, row.count, f"{row.zipf:.2f}", f"{row.score:.4f}", row.length,
                             "yes" if row.kept else "no", row.reason, row.note])


def count_words(text: str) -> Counter[str]:
    """Lower-cased word types of ``text`` (NFC-normalised first) with their counts."""
    text = unicodedata.normalize("NFC", text).lower()
    return Counter(WORD_PATTERN.findall(text))


def english_zipf(words: Iterable[str]) -> dict[str, float]:
    """``wordfreq`` Zipf frequency in English for each word (0.0 when unknown)."""
    from wordfreq import zipf_frequency

    return {word: float(zipf_frequency(word, "en")) for word in words}


def load_stopwords(path: str | Path, encoding: str = "utf-8") -> set[str]:
    """Stop words from a file: one per line, blank lines and ``#`` comments skipped, lower-cased."""
    from wake2vec.vocab.textclean import read_text_file

    text = read_text_file(path, encoding, hint="set the encoding with --encoding")
    words = set()
    for line in text.splitlines():
        entry = line.strip()
        if entry and not entry.startswith("#"):
            words.add(unicodedata.normalize("NFC", entry).lower())
    if not words:
        raise DataError(f"{path}: the stop-word file holds no words")
    return words


def _fragment_hosts(
    counts: Counter[str], zipf: dict[str, float], max_extra: int, host_zipf: float
) -> dict[str, tuple[str, int]]:
    """Map each string that is an ordinary English type minus 1..max_extra letters (taken from
    its start and/or end) to its most frequent such host type and that host's count."""
    hosts: dict[str, tuple[str, int]] = {}
    for host, count in counts.items():
        if zipf[host] < host_zipf:
            continue
        n = len(host)
        for cut in range(1, min(max_extra, n - 1) + 1):
            for left in range(cut + 1):
                piece = host[left : n - (cut - left)]
                removed = host[:left] + host[n - (cut - left) :]
                if not removed.isalpha():
                    continue
                best = hosts.get(piece)
                if best is None or (-count, host) < (-best[1], best[0]):
                    hosts[piece] = (host, count)
    return hosts


def build_lexicon(
    text: str,
    *,
    min_length: int = 5,
    min_count: int = 1,
    zipf_ceiling: float = 3.0,
    stopwords: Iterable[str] = DEFAULT_STOPWORDS,
    keep_fragments: bool = False,
    fragment_max_extra: int = 2,
    fragment_ratio: float = 5.0,
    fragment_host_zipf: float = 3.0,
) -> LexiconBuild:
    """Mine the word types of ``text`` that general English does not know (see the module doc
    for the extraction pattern, the score and the filters, including the fragment rule)."""
    if min_length < 1 or min_count < 1:
        raise ValueError("min_length and min_count must be at least 1")
    counts = count_words(text)
    tokens = sum(counts.values())
    zipf = english_zipf(counts)
    stop = {unicodedata.normalize("NFC", w).lower() for w in stopwords}
    hosts = {} if keep_fragments else _fragment_hosts(counts, zipf, fragment_max_extra, fragment_host_zipf)

    rows = []
    for word, count in counts.items():
        score = math.log10(count * 1e9 / tokens) - zipf[word]
        reason, note = "", ""
        if len(word) < min_length:
            reason = TOO_SHORT
        elif count < min_count:
            reason = RARE
        elif word in stop:
            reason = STOPWORD
        elif zipf[word] > zipf_ceiling:
            reason = COMMON
        elif word in hosts and hosts[word][1] >= fragment_ratio * count:
            reason = FRAGMENT
            note = f"part of {hosts[word][0]!r} ({hosts[word][1]}x)"
        rows.append(Candidate(word, count, zipf[word], round(score, 6), not reason, reason, note))
    rows.sort(key=lambda row: (-row.score, row.word))
    settings: dict[str, object] = {
        "min_length": min_length, "min_count": min_count, "zipf_ceiling": zipf_ceiling,
        "stopwords": len(stop), "keep_fragments": keep_fragments,
        "fragment_max_extra": fragment_max_extra, "fragment_ratio": fragment_ratio,
        "fragment_host_zipf": fragment_host_zipf,
    }
    return LexiconBuild([row.word for row in rows if row.kept], rows, tokens, settings)
