"""The run directory: creation rules (never overwrite without --force), a lock, the manifest
and the log."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from wake2vec import __version__
from wake2vec.errors import RunDirError

MANIFEST = "manifest.json"
LOCK = "run.lock"
LOG = "run.log"
PACKAGES = ("torch", "transformers", "tokenizers", "peft", "accelerate", "datasets", "safetensors",
            "bitsandbytes", "pluggy", "pydantic", "numpy", "scipy")


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def cache_root() -> Path:
    """Where built artefacts shared between runs live (the demo model): ``WAKE2VEC_CACHE`` or
    ``~/.cache/wake2vec``."""
    override = os.environ.get("WAKE2VEC_CACHE")
    return Path(override) if override else Path.home() / ".cache" / "wake2vec"


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON to a temporary file beside ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2, ensure_ascii=False, default=str)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_digest(path: Path) -> dict[str, Any]:
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            sha.update(chunk)
    return {"path": str(path), "sha256": sha.hexdigest(), "bytes": path.stat().st_size}


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "wake2vec": __version__}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


@dataclass
class RunDir:
    """A prepared, locked run directory and its manifest (read-only in the other processes of
    a multi-process run: ``writes`` is False there)."""

    path: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    _lock_fd: int | None = None
    writes: bool = True
    fresh: bool = False  # this session created (or replaced) the directory: not a resume
    _kept_dir: bool = False  # the directory existed (empty) before: remove only its contents
    _discard: bool = False

    # ----------------------------------------------------------------- creation

    @classmethod
    def prepare(cls, path: Path, *, resume: bool, force: bool) -> RunDir:
        """Create (or reopen with ``resume``) the run directory; refuse to clobber a run."""
        path = path.expanduser()
        exists = path.exists() and any(path.iterdir()) if path.is_dir() else path.exists()
        if resume and force:
            raise RunDirError("--resume and --force contradict each other; choose one")
        if resume and not (path / MANIFEST).is_file():
            raise RunDirError(f"nothing to resume: {path} holds no {MANIFEST}")
        if exists and not resume and not force:
            raise RunDirError(
                f"run directory {path} already exists; pass --resume to continue it or --force to "
                "replace it"
            )
        run = cls(path, fresh=not resume, _kept_dir=path.is_dir() and not exists)
        try:
            if exists and force:
                run._lock()  # refuse to delete a run another process is writing
                run._unlock()
                shutil.rmtree(path)
            path.mkdir(parents=True, exist_ok=True)
            probe = path / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise RunDirError(
                f"cannot write the run directory {path}: {exc.strerror or exc}; choose a writable "
                "place with --output-dir or run.output_dir"
            ) from None
        run._lock()
        if resume:
            run.manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        return run

    @classmethod
    def follow(cls, path: Path) -> RunDir:
        """The run directory the main process prepared, for another process of the same run:
        its manifest as read now; it takes no lock and writes nothing."""
        run = cls(path.expanduser(), writes=False)
        if (run.path / MANIFEST).is_file():
            run.manifest = json.loads((run.path / MANIFEST).read_text(encoding="utf-8"))
        return run

    def _lock(self) -> None:
        import fcntl

        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunDirError(f"{self.path} is in use by another wake2vec process (lock {LOCK})") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def discard_when_closed(self) -> None:
        """Bad input was found: on :meth:`close`, remove what this session wrote, provided it
        created the directory and no phase has started (a resumed run is never touched)."""
        self._discard = True

    def close(self) -> None:
        self._unlock()
        if not (self._discard and self.fresh and self.writes):
            return
        phases = self.manifest.get("phases", {}).values()
        if any(record.get("status", "pending") != "pending" for record in phases):
            return  # training began: keep everything
        logger = logging.getLogger("wake2vec")
        for handler in list(logger.handlers):  # the run.log handler holds a file in the directory
            if Path(getattr(handler, "baseFilename", "/")).parent == self.path.resolve():
                logger.removeHandler(handler)
                handler.close()
        if self._kept_dir:
            for child in self.path.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        else:
            shutil.rmtree(self.path, ignore_errors=True)

    # ----------------------------------------------------------------- layout

    def phase_dir(self, index: int, name: str) -> Path:
        path = self.path / f"{index + 1:02d}-{name}"
        if self.writes:
            path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def cache_dir(self) -> Path:
        return cache_root()

    # ----------------------------------------------------------------- manifest

    def save_manifest(self) -> None:
        if not self.writes:
            return
        self.manifest["updated"] = now()
        write_json_atomic(self.path / MANIFEST, self.manifest)

    def start_manifest(self, *, recipe: dict[str, Any], source: str, overrides: list[str],
                       data_files: list[Path], plugins: list[dict[str, Any]]) -> None:
        m = self.manifest
        m.setdefault("created", now())
        m.setdefault("sessions", []).append({"started": now(), "argv": sys.argv, "pid": os.getpid()})
        m.update(
            wake2vec_version=__version__,
            status="running",
            recipe_source=source,
            overrides=overrides,
            recipe=recipe,
            seed=recipe["run"]["seed"],
            trust_remote_code=recipe["model"]["trust_remote_code"],
            packages=package_versions(),
            host={"platform": platform.platform(), "cpus": os.cpu_count()},
            data_files={p.name: file_digest(p) for p in data_files},
            plugins=plugins,
        )
        m.setdefault("phases", {})
        self.save_manifest()

    def set_status(self, status: str, error: str | None = None) -> None:
        self.manifest["status"] = status
        self.manifest["error"] = error
        if self.manifest.get("sessions"):
            self.manifest["sessions"][-1]["ended"] = now()
        self.save_manifest()

    def phase_record(self, name: str) -> dict[str, Any]:
        return self.manifest.setdefault("phases", {}).setdefault(name, {"status": "pending"})


def setup_logging(run_dir: Path, verbose: bool = True, rank: int = 0) -> logging.Logger:
    """Log to ``run.log`` in the run directory and, briefly, to stderr. The other processes of
    a multi-process run (``rank`` > 0) log only warnings and errors, to stderr."""
    logger = logging.getLogger("wake2vec")
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    if rank:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter(f"[process {rank}] %(message)s"))
        logger.addHandler(console)
        logger.propagate = False
        return logger
    file_handler = logging.FileHandler(run_dir / LOG, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(file_handler)
    if verbose:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(console)
    logger.propagate = False
    return logger
