"""Read a lexicon file: one word per line, NFC-normalised, with every unusable entry explained."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from wake2vec.errors import DataError
from wake2vec.vocab.files import check_byte_order_mark

MAX_WORD_LENGTH = 100
MAX_LISTED = 10  # rejected entries listed one per line in an error message
WORD_MARKERS = {"\u2581": "SentencePiece's word-boundary marker"}  # never produced by encoding text


@dataclass
class LexiconLoad:
    """The words of a lexicon file, in file order, and what was left out."""

    words: list[str]
    rejected: list[tuple[int, str, str]] = field(default_factory=list)  # (line, entry, reason)
    duplicates: int = 0
    duplicate_lines: list[tuple[int, str, int]] = field(
        default_factory=list
    )  # (line, entry, first line)

    def require_usable(self, path: str | Path) -> None:
        """Raise DataError listing every rejected entry (file, line, entry, reason): an entry
        that cannot become one token is a mistake in the file, not something to drop quietly."""
        if not self.rejected:
            return
        n = len(self.rejected)
        lines = [
            f"{path}: {n} lexicon entr{'y' if n == 1 else 'ies'} cannot be used; fix or remove "
            f"{'it' if n == 1 else 'them'}:"
        ]
        lines += [
            f"  {path}:{line}: {show_entry(entry)}: {reason}"
            for line, entry, reason in self.rejected[:MAX_LISTED]
        ]
        if n > MAX_LISTED:
            lines.append(f"  ... and {n - MAX_LISTED} more")
        raise DataError("\n".join(lines))

    def notes(self, path: str | Path) -> list[str]:
        """Warnings about harmless quirks of the file: duplicate entries, skipped."""
        if not self.duplicate_lines:
            return []
        shown = "; ".join(
            f"line {line} repeats line {first} ({show_entry(entry)})"
            for line, entry, first in self.duplicate_lines[:3]
        )
        more = ", ..." if len(self.duplicate_lines) > 3 else ""
        n = len(self.duplicate_lines)
        return [
            f"{path}: {n} duplicate lexicon entr{'y' if n == 1 else 'ies'} skipped ({shown}{more})"
        ]


def show_entry(entry: str, limit: int = 40) -> str:
    """An entry for a message: quoted with escapes, long ones cut with their length."""
    if len(entry) <= limit:
        return repr(entry)
    return f"{entry[:limit]!r}... ({len(entry)} characters)"


def entry_problem(word: str) -> str | None:
    """Why ``word`` cannot be a lexicon entry, or None when it can."""
    if word.isalpha() and len(word) <= MAX_WORD_LENGTH and word[0] not in WORD_MARKERS:
        return None  # letters only (most entries): nothing below can object
    if len(word) > MAX_WORD_LENGTH:
        return f"longer than {MAX_WORD_LENGTH} characters ({len(word)})"
    if word[:1] in WORD_MARKERS:
        return (
            f"starts with {_describe(word[0])}, {WORD_MARKERS[word[0]]}: a token spelt with it "
            "is never produced from text; write the plain word"
        )
    for ch in word:
        if ch.isspace():
            return f"contains whitespace ({_describe(ch)})"
        category = unicodedata.category(ch)
        if category in ("Cc", "Cf", "Cs", "Co"):
            return f"contains a control or format character ({_describe(ch)})"
        if category == "Cn":
            return f"contains an unassigned or non-character code point ({_describe(ch)})"
    return None


def _describe(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X}" + (f" {name}" if name else "")


def load_lexicon(path: str | Path, encoding: str = "utf-8") -> LexiconLoad:
    """Read ``path``: strip each line, skip blanks and ``#`` comments, NFC-normalise, drop
    duplicates and reject entries with control characters, inner whitespace or more than
    100 characters. Raises DataError when the file cannot be decoded or yields no words."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the lexicon ({exc.strerror or exc})") from exc
    check_byte_order_mark(raw, path, encoding, "data.encoding")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"{path}:{line}: not valid {encoding} text (byte {exc.start}: {exc.reason}); "
            f"convert the file or set data.encoding"
        ) from exc
    except LookupError as exc:
        raise DataError(f"{path}: unknown text encoding {encoding!r}") from exc
    if text.startswith("\ufeff"):
        text = text[1:]

    words: list[str] = []
    seen: dict[str, int] = {}  # word -> the line it first appeared on
    duplicate_lines: list[tuple[int, str, int]] = []
    rejected: list[tuple[int, str, str]] = []
    duplicates = 0
    for number, line in enumerate(text.split("\n"), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        word = unicodedata.normalize("NFC", entry)
        problem = entry_problem(word)
        if problem is not None:
            rejected.append((number, entry, problem))
            continue
        if word in seen:
            duplicates += 1
            duplicate_lines.append((number, entry, seen[word]))
            continue
        seen[word] = number
        words.append(word)
    if not words:
        detail = (
            f" ({len(rejected)} entries rejected, first at line {rejected[0][0]}: {rejected[0][2]})"
            if rejected
            else ""
        )
        raise DataError(f"{path}: the lexicon holds no usable words{detail}")
    return LexiconLoad(
        words=words, rejected=rejected, duplicates=duplicates, duplicate_lines=duplicate_lines
    )
