"""Tolerant readers of a run directory, finished or still being written, without torch: JSON
files that may be mid-write, JSON Lines whose last line may be partial, nested lookups."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from wake2vec.errors import UserInputError
from wake2vec.rundir.directory import LOCK, MANIFEST


def require_run_dir(path: Path) -> Path:
    """``path`` if it is a wake2vec run directory, else a :class:`UserInputError` naming it."""
    if not path.exists():
        raise UserInputError(f"{path}: no such run directory")
    if not path.is_dir():
        raise UserInputError(f"{path} is not a wake2vec run directory (it is a file)")
    if not (path / MANIFEST).is_file() and not (path / LOCK).is_file():
        raise UserInputError(
            f"{path} is not a wake2vec run directory (no {MANIFEST}); pass the folder that "
            "`wake2vec run` wrote"
        )
    return path


def require_run_dirs(paths: list[Path] | tuple[Path, ...]) -> None:
    """Check every path with :func:`require_run_dir`; one error listing every bad one."""
    bad = []
    for path in paths:
        try:
            require_run_dir(path)
        except UserInputError as exc:
            bad.append(str(exc))
    if bad:
        raise UserInputError("\n".join(bad))


def read_json(path: Path, attempts: int = 5) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None when it is absent. A file being replaced (or written
    in place) while we read is read again a few times before giving up."""
    for attempt in range(attempts):
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
            return value if isinstance(value, dict) else None
        except FileNotFoundError:
            if attempt == attempts - 1 or not path.parent.is_dir():
                return None
        except (json.JSONDecodeError, UnicodeDecodeError):
            if attempt == attempts - 1:
                return None
        time.sleep(0.05)
    return None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON-lines file; a line that does not parse (the half-written last line of
    a file another process is appending to) is left out."""
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return []
    rows = []
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def dig(value: Any, *keys: Any) -> Any:
    """``value[k1][k2]...`` or None as soon as a key is missing or a level is not a container."""
    for key in keys:
        if isinstance(value, dict):
            value = value.get(key)
        elif isinstance(value, list) and isinstance(key, int) and -len(value) <= key < len(value):
            value = value[key]
        else:
            return None
    return value


def age_s(path: Path, now: float | None = None) -> float | None:
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return None
    return max(0.0, (now if now is not None else time.time()) - mtime)
