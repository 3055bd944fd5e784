"""Read a lexicon file: one word per line, NFC-normalised, with every unusable entry explained."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from wake2vec.errors import DataError

MAX_WORD_LENGTH = 100


@dataclass
class LexiconLoad:
    """The words of a lexicon file, in file order, and what was left out."""

    words: list[str]
    rejected: list[tuple[int, str, str]] = field(default_factory=list)  # (line, entry, reason)
    duplicates: int = 0


def entry_problem(word: str) -> str | None:
    """Why ``word`` cannot be a lexicon entry, or None when it can."""
    if len(word) > MAX_WORD_LENGTH:
        return f"longer than {MAX_WORD_LENGTH} characters ({len(word)})"
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
    seen: set[str] = set()
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
            continue
        seen.add(word)
        words.append(word)
    if not words:
        detail = (
            f" ({len(rejected)} entries rejected, first at line {rejected[0][0]}: {rejected[0][2]})"
            if rejected
            else ""
        )
        raise DataError(f"{path}: the lexicon holds no usable words{detail}")
    return LexiconLoad(words=words, rejected=rejected, duplicates=duplicates)
