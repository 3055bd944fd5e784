"""Reading the files a study gives: a corpus (plain text or JSONL) and JSONL records, with
errors that name the file and its line, column or key."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wake2vec.errors import DataError

JSONL_SUFFIXES = (".jsonl", ".ndjson")  # corpora with one {"text": ...} object per line
JSONL_FIELD = "text"


_BOMS = (  # longest first: the UTF-32 LE mark starts with the UTF-16 LE one
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)


def check_byte_order_mark(raw: bytes, path: Path, encoding: str, option: str | None) -> None:
    """Refuse UTF-16/32 text read as another encoding, saying which encoding it is and, when
    the encoding is a recipe ``option`` (``data.encoding``), how to set it."""
    import codecs

    try:
        wanted = codecs.lookup(encoding).name
    except LookupError:
        return  # the decoder reports an unknown encoding
    for mark, family in _BOMS:
        if raw.startswith(mark):
            if not wanted.startswith(family):
                fix = f'set {option} = "{family}" in the recipe or ' if option else ""
                raise DataError(
                    f"{path}: line 1: the file is {family.upper()} text (it starts with a "
                    f"{family.upper()} byte-order mark), not {encoding}; {fix}convert the file "
                    "to UTF-8"
                )
            return


def read_bytes(path: Path, noun: str = "file") -> bytes:
    """The bytes of ``path``; a missing path, a folder or a read error is a :class:`DataError`
    naming the file (``noun``: what it was meant to be, e.g. "corpus file")."""
    if not path.exists():
        raise DataError(f"{path}: {noun} not found")
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the {noun} ({exc.strerror or exc})") from None


def read_corpus(path: Path | str, encoding: str = "utf-8") -> str:
    """Read a text corpus: NFC-normalised, line ends as ``\\n``, a leading BOM removed.

    A ``.jsonl`` (or ``.ndjson``) corpus holds one JSON object per line with a ``"text"``
    string; the texts are joined with blank lines between them (paragraph boundaries for the
    validation split). Raises :class:`DataError` naming the file (and the line, column or key)
    when it is missing, empty, binary, does not decode with ``encoding`` or has a broken
    JSONL line.
    """
    path = Path(path)
    raw = read_bytes(path, "corpus file")
    if not raw.strip():
        raise DataError(f"{path}: corpus file is empty")
    check_byte_order_mark(raw, path, encoding, "data.encoding")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        if b"\x00" in raw:
            raise _binary(path, raw.index(b"\x00")) from None
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DataError(
            f"{path}: line {line}, column {column} (byte offset {exc.start}): not valid {encoding} "
            f"text ({exc.reason}); if the file uses another encoding, set data.encoding in the "
            f'recipe (for example encoding = "latin-1" or "cp1252")'
        ) from None
    if "\x00" in text:
        raise _binary(path, text.index("\x00"))
    text = text.removeprefix("\ufeff")
    if path.suffix.lower() in JSONL_SUFFIXES:
        text = _jsonl_text(text, path)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = unicodedata.normalize("NFC", text)
    if not text.strip():
        raise DataError(f"{path}: corpus file is empty (only whitespace)")
    return text


def jsonl_objects(text: str, path: Path, hint: str = "") -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSONL text; a line that is not a JSON
    object is a ``DataError`` naming the file and line (``hint`` says what was expected)."""
    tail = f"; {hint}" if hint else ""
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno}){tail}"
            ) from None
        if not isinstance(record, dict):
            raise DataError(
                f"{path}:{number}: expected a JSON object, got {type(record).__name__}{tail}"
            )
        yield number, record


def _jsonl_text(text: str, path: Path) -> str:
    """The ``"text"`` strings of a JSONL corpus, one document per line, joined by blank lines."""
    documents: list[str] = []
    expected = f'each line must be one JSON object with a "{JSONL_FIELD}" string'
    for number, record in jsonl_objects(text, path, expected):
        value = record.get(JSONL_FIELD)
        if not isinstance(value, str):
            found = "is missing" if value is None else f"is a {type(value).__name__}"
            keys = ", ".join(repr(k) for k in list(record)[:5]) or "none"
            raise DataError(
                f'{path}:{number}: key "{JSONL_FIELD}" {found} (keys: {keys}); {expected}'
            )
        if "\x00" in value:
            raise DataError(f'{path}:{number}: key "{JSONL_FIELD}" holds a NUL character')
        if value.strip():
            documents.append(value.strip("\n"))
    return "\n\n".join(documents) + ("\n" if documents else "")


def _binary(path: Path, offset: int) -> DataError:
    return DataError(
        f"{path}: looks like a binary file (a NUL character at offset {offset}); the corpus must be "
        "plain text"
    )
