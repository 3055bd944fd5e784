"""Built-in observer: keeps a copy of the run directory in ``run.mirror_dir`` (a mounted drive, a
network share) as the run goes, so a session that loses its local disk loses nothing saved.

The mirror is synchronised one way after every checkpoint, at the end of each phase and at the
end of the run: files that are new or changed (size or modification time) are copied to a
temporary name and renamed, so a half-copied file never looks complete; checkpoints pruned
locally are pruned in the mirror. A mirror that is unavailable (unmounted, vanished, full,
read-only) costs a warning, never the run: training goes on and the next sync tries again. The
mirror root is never re-created once it vanished (that would fill the local disk under the
mount point); its parent must exist when the run starts. Resume from a mirror with
``wake2vec run RECIPE --resume --output-dir <mirror_dir>/<run folder>``.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from wake2vec import hookimpl

log = logging.getLogger("wake2vec")
SKIP = {"run.lock", "cache"}  # the lock and tokenised-data caches stay local


def mirror_root(run) -> Path | None:
    """Where ``run`` is mirrored: ``<run.mirror_dir>/<run folder name>``, or None."""
    target = (run.recipe.get("run") or {}).get("mirror_dir")
    return Path(target).expanduser() / Path(run.run_dir).name if target else None


def _wanted(run_dir: Path) -> dict[Path, os.stat_result]:
    found = {}
    for path in run_dir.rglob("*"):
        rel = path.relative_to(run_dir)
        if rel.parts[0] in SKIP or path.is_symlink() or not path.is_file():
            continue
        if any(part.startswith(".") for part in rel.parts):  # temporary files of atomic writes
            continue
        found[rel] = path.stat()
    return found


def sync(run_dir: Path, mirror: Path) -> int:
    """Copy what is new or changed in ``run_dir`` to ``mirror`` and drop checkpoint folders that
    no longer exist locally; returns the number of files copied. Raises ``OSError`` when the
    mirror is unavailable."""
    if not mirror.parent.is_dir():
        raise FileNotFoundError(f"the mirror's folder {mirror.parent} is gone")
    mirror.mkdir(exist_ok=True)
    copied = 0
    for rel, stat in sorted(_wanted(run_dir).items()):
        target = mirror / rel
        try:
            there = target.stat()
            if there.st_size == stat.st_size and int(there.st_mtime) == int(stat.st_mtime):
                continue
        except FileNotFoundError:
            pass
        _make_folders(mirror, target.parent)
        tmp = target.with_name(f".{target.name}.mirror-tmp")
        shutil.copy2(run_dir / rel, tmp)
        tmp.replace(target)
        copied += 1
    for folder in mirror.glob("*/checkpoints/*"):  # pruned locally: prune here too
        if folder.is_dir() and not (run_dir / folder.relative_to(mirror)).exists():
            shutil.rmtree(folder, ignore_errors=True)
    return copied


def _make_folders(mirror: Path, folder: Path) -> None:
    """Create ``folder`` below ``mirror`` one level at a time, never ``parents=True``: when the
    drive vanishes during a sync, the next level fails instead of re-creating the mirror root."""
    levels = [folder, *folder.parents]
    for level in reversed(levels[: levels.index(mirror) + 1]):
        level.mkdir(exist_ok=True)


def _try_sync(run, when: str) -> None:
    mirror = mirror_root(run)
    if mirror is None:
        return
    try:
        count = sync(Path(run.run_dir), mirror)
        log.debug("mirror %s: %d files copied (%s)", mirror, count, when)
    except OSError as exc:
        log.warning("mirror %s is unavailable (%s) after %s; training continues, the next sync "
                    "will try again", mirror, exc.strerror or exc, when)


@hookimpl
def wake2vec_run_start(run):  # the recipe check made sure the mirror's folder existed
    _try_sync(run, "the start")


@hookimpl
def wake2vec_checkpoint_saved(run, phase, step, path):
    _try_sync(run, f"the checkpoint of {phase.name} at step {step}")


@hookimpl
def wake2vec_phase_end(run, phase, metrics):
    _try_sync(run, f"phase {phase.name}")


@hookimpl
def wake2vec_run_end(run, status, error):
    _try_sync(run, "the end of the run")
