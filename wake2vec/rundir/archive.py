"""Ship a run as one tar.gz and restore it: ``wake2vec archive`` and ``wake2vec unpack``.

An archive holds one top-level folder (the run directory's name) with the manifest, the resolved
recipe, logs, the injection report, the extended tokenizer, the new rows (as initialised and after
each phase), adapters, metrics, histories, figures and the report; checkpoints unless asked not
to; the final model only when asked (it is the whole model: gigabytes for a real one). Every file
is listed with its size and SHA-256 in ``ARCHIVE.json`` inside the archive, checked on unpack.
Unpacking uses tarfile's ``data`` filter: no absolute paths, no ``..``, no links out of the folder,
no device files. Uses only the standard library (tarfile, hashlib), so it needs no torch.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from wake2vec import __version__
from wake2vec.errors import UserInputError
from wake2vec.rundir.directory import LOCK, MANIFEST

INDEX = "ARCHIVE.json"
# never archived: the lock, tokenised-data caches, temporary files of interrupted writes
_SKIP_NAMES = {LOCK, "cache"}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def archive_members(run_dir: Path, *, checkpoints: bool = True, model: bool = False) -> Iterator[Path]:
    """The files of ``run_dir`` an archive holds (relative paths, sorted)."""
    for path in sorted(run_dir.rglob("*")):
        rel = path.relative_to(run_dir)
        parts = rel.parts
        if not path.is_file() or path.is_symlink():
            continue
        if parts[0] in _SKIP_NAMES or any(p.startswith(".") and p.endswith(".tmp") for p in parts):
            continue
        if not model and parts[0] == "final":
            continue
        if not checkpoints and "checkpoints" in parts[:-1]:
            continue
        yield rel


def make_archive(run_dir: Path, out: Path | None = None, *, checkpoints: bool = True,
                 model: bool = False) -> Path:
    """Write the archive of ``run_dir`` (default ``<run_dir>.tar.gz`` beside it); returns its path.

    Written to a temporary name and renamed, so an interrupted archive never looks complete."""
    run_dir = Path(run_dir).expanduser()
    if not (run_dir / MANIFEST).is_file():
        raise UserInputError(f"{run_dir} is not a wake2vec run directory (no {MANIFEST})")
    out = Path(out) if out is not None else run_dir.with_name(run_dir.name + ".tar.gz")
    if out.resolve().is_relative_to(run_dir.resolve()):
        raise UserInputError(f"the archive {out} would be inside the run directory it archives")
    top = run_dir.name
    files = list(archive_members(run_dir, checkpoints=checkpoints, model=model))
    index = {
        "format": 1,
        "wake2vec_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "run": top,
        "checkpoints": checkpoints,
        "final_model": model,
        "files": {str(rel): {"bytes": (run_dir / rel).stat().st_size, "sha256": _sha256(run_dir / rel)}
                  for rel in files},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
            payload = json.dumps(index, indent=2).encode()
            info = tarfile.TarInfo(f"{top}/{INDEX}")
            info.size, info.mtime, info.mode = len(payload), int(time.time()), 0o644
            tar.addfile(info, io.BytesIO(payload))
            for rel in files:
                tar.add(run_dir / rel, arcname=f"{top}/{rel.as_posix()}", recursive=False)
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


def unpack_archive(archive: Path, dest: Path | None = None, *, force: bool = False) -> Path:
    """Restore an archive made by :func:`make_archive` to ``dest`` (default: the run's name in
    the current directory); checks every file against the index. Returns the run directory."""
    archive = Path(archive).expanduser()
    if not archive.is_file():
        raise UserInputError(f"archive {archive} does not exist")
    try:
        with tarfile.open(archive, "r:*") as tar:
            names = [m.name for m in tar.getmembers()]
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UserInputError(f"{archive} is not a readable tar archive: {exc}") from None
    tops = {Path(n).parts[0] for n in names if n}
    if len(tops) != 1:
        raise UserInputError(f"{archive} is not a wake2vec archive (expected one top-level folder)")
    top = tops.pop()
    target = (Path(dest).expanduser() if dest is not None else Path.cwd() / top).resolve()
    occupied = target.is_dir() and any(target.iterdir()) or target.is_file()
    if occupied and not force:
        raise UserInputError(f"{target} already exists; pass --force to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".wake2vec-unpack-", dir=target.parent) as tmp:
        try:
            with tarfile.open(archive, "r:*") as tar:
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise UserInputError(f"{archive}: refused or failed to extract: {exc}") from None
        staged = Path(tmp) / top
        index_file = staged / INDEX
        if not index_file.is_file() or not (staged / MANIFEST).is_file():
            raise UserInputError(f"{archive} is not a wake2vec archive (no {INDEX} or {MANIFEST})")
        index = json.loads(index_file.read_text(encoding="utf-8"))
        for rel, facts in index.get("files", {}).items():
            path = staged / rel
            if not path.is_file() or _sha256(path) != facts["sha256"]:
                raise UserInputError(f"{archive}: {rel} is missing or damaged (checksum differs)")
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        staged.replace(target)
    return target
