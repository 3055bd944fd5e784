"""Morpheme lists (CSV), morpheme groups and word-formation devices (JSONL), and greedy
prefix/root/suffix segmentation."""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from wake2vec.errors import DataError
from wake2vec.vocab.files import check_byte_order_mark, jsonl_objects

MORPHEME_TYPES = ("prefix", "suffix")
MIN_ROOT = 3


@dataclass
class MorphemeGroup:
    """One line of a morpheme-groups file: a morpheme with example words and their bases."""

    morpheme: str
    type: str  # "prefix" | "suffix"
    examples: list[str] = field(default_factory=list)
    bases: list[str] = field(default_factory=list)


@dataclass
class Morphology:
    """Prefixes and suffixes (morpheme -> example words), optional groups and devices."""

    prefixes: dict[str, list[str]] = field(default_factory=dict)
    suffixes: dict[str, list[str]] = field(default_factory=dict)
    groups: list[MorphemeGroup] = field(default_factory=list)
    devices: dict[str, list[str]] = field(default_factory=dict)

    def examples(self, morpheme: str, kind: str) -> list[str]:
        """Example words of a prefix or suffix (empty when unknown)."""
        table = self.prefixes if kind == "prefix" else self.suffixes
        return table.get(morpheme, [])


class Segmentation(NamedTuple):
    """A word split greedily into prefix + root + suffix (prefix/suffix may be empty)."""

    prefix: str
    root: str
    suffix: str


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text.strip())


def _read_text(path: Path, what: str) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from exc
    check_byte_order_mark(raw, path, "utf-8", None)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"{path}:{line}: not valid UTF-8 text (byte {exc.start}: {exc.reason}); the {what} "
            "must be UTF-8: convert the file"
        ) from exc
    return text[1:] if text.startswith("\ufeff") else text


def _read_morpheme_csv(path: Path) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """``type,morpheme,example1..example10``; a header row is recognised and skipped."""
    prefixes: dict[str, list[str]] = {}
    suffixes: dict[str, list[str]] = {}
    reader = csv.reader(io.StringIO(_read_text(path, "morpheme list"), newline=""))
    for row in reader:
        line = reader.line_num
        cells = [c.strip() for c in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if (
            line == 1
            and cells[0].lower() == "type"
            and len(cells) > 1
            and cells[1].lower() == "morpheme"
        ):
            continue
        if len(cells) < 2:
            raise DataError(
                f"{path}:{line}: column 2 (morpheme) is missing; expected type,morpheme,example1..example10"
            )
        kind = cells[0].lower()
        if kind not in MORPHEME_TYPES:
            header = " (a header row must read type,morpheme,example1,...)" if line == 1 else ""
            raise DataError(
                f"{path}:{line}: column 1 (type): unknown type {cells[0]!r}; expected 'prefix' or "
                f"'suffix'{header}"
            )
        morpheme = _nfc(cells[1]).lower()
        if not morpheme:
            raise DataError(f"{path}:{line}: column 2 (morpheme) is empty")
        examples = [_nfc(c) for c in cells[2:] if _nfc(c)]
        table = prefixes if kind == "prefix" else suffixes
        merged = table.setdefault(morpheme, [])
        merged.extend(e for e in examples if e not in merged)
    if not prefixes and not suffixes:
        raise DataError(f"{path}: the morpheme list holds no prefixes or suffixes")
    return prefixes, suffixes


def _jsonl_records(path: Path, what: str) -> Iterable[tuple[int, dict[str, Any]]]:
    return jsonl_objects(_read_text(path, what), path)


def _string_list(record: dict[str, Any], key: str, path: Path, number: int) -> list[str]:
    value = record.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DataError(f"{path}:{number}: key {key!r} must be a list of strings")
    return [_nfc(v) for v in value if _nfc(v)]


def _required_string(record: dict[str, Any], key: str, path: Path, number: int) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{path}:{number}: key {key!r} is missing or empty")
    return _nfc(value)


def _read_groups(path: Path) -> list[MorphemeGroup]:
    groups = []
    for number, record in _jsonl_records(path, "morpheme groups"):
        morpheme = _required_string(record, "morpheme", path, number).lower()
        kind = _required_string(record, "type", path, number).lower()
        if kind not in MORPHEME_TYPES:
            raise DataError(
                f"{path}:{number}: key 'type': unknown type {kind!r}; expected 'prefix' or 'suffix'"
            )
        groups.append(
            MorphemeGroup(
                morpheme,
                kind,
                _string_list(record, "examples", path, number),
                _string_list(record, "bases", path, number),
            )
        )
    return groups


def _read_devices(path: Path) -> dict[str, list[str]]:
    devices: dict[str, list[str]] = {}
    for number, record in _jsonl_records(path, "device groups"):
        device = _required_string(record, "device", path, number)
        merged = devices.setdefault(device, [])
        merged.extend(e for e in _string_list(record, "examples", path, number) if e not in merged)
    return devices


def load_morphology(
    csv_path: str | Path,
    groups_path: str | Path | None = None,
    devices_path: str | Path | None = None,
) -> Morphology:
    """Read the morpheme CSV and, when given, the morpheme-group and device JSONL files.

    Group morphemes that the CSV lacks are added to its prefix/suffix tables with the group's
    examples, so segmentation knows them too."""
    prefixes, suffixes = _read_morpheme_csv(Path(csv_path))
    groups = _read_groups(Path(groups_path)) if groups_path is not None else []
    for group in groups:
        table = prefixes if group.type == "prefix" else suffixes
        merged = table.setdefault(group.morpheme, [])
        merged.extend(e for e in group.examples if e not in merged)
    devices = _read_devices(Path(devices_path)) if devices_path is not None else {}
    return Morphology(prefixes=prefixes, suffixes=suffixes, groups=groups, devices=devices)


def segmenter(
    morphology: Morphology, blocklist: Iterable[str] = ()
) -> Callable[[str], Segmentation]:
    """A function segmenting words like ``segment``, with the morpheme lists sorted once."""
    blocked = set(blocklist)
    prefixes = sorted(
        (m for m in morphology.prefixes if m and m not in blocked), key=len, reverse=True
    )
    suffixes = sorted(
        (m for m in morphology.suffixes if m and m not in blocked), key=len, reverse=True
    )

    def split(word: str) -> Segmentation:
        lowered = word.lower()
        prefix_len = next(
            (len(p) for p in prefixes if lowered.startswith(p) and len(word) - len(p) >= MIN_ROOT),
            0,
        )
        rest = lowered[prefix_len:]
        suffix_len = next(
            (len(s) for s in suffixes if rest.endswith(s) and len(rest) - len(s) >= MIN_ROOT), 0
        )
        end = len(word) - suffix_len
        return Segmentation(word[:prefix_len], word[prefix_len:end], word[end:])

    return split


def segment(word: str, morphology: Morphology, blocklist: Iterable[str] = ()) -> Segmentation:
    """Split ``word`` into the longest known prefix, then the longest known suffix of the rest,
    always leaving a root of at least three characters; morphemes in ``blocklist`` are never
    used. Matching ignores case; the parts keep the word's own spelling."""
    return segmenter(morphology, blocklist)(word)


def word_groups(words: Iterable[str], morphology: Morphology | None) -> dict[str, str]:
    """A label per word for colouring plots: its word-formation device when the devices file
    names it, else its suffix (``-ation``) or prefix (``re-``) by :func:`segment`; words with
    neither are left out. Empty without morphology."""
    if morphology is None:
        return {}
    labels: dict[str, str] = {}
    for device, members in morphology.devices.items():
        for word in members:
            labels.setdefault(word, device)
    split = segmenter(morphology)
    for word in words:
        if not word or word in labels:
            continue
        parts = split(word)
        if parts.suffix:
            labels[word] = f"-{parts.suffix.lower()}"
        elif parts.prefix:
            labels[word] = f"{parts.prefix.lower()}-"
    return labels
