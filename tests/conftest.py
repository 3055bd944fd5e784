"""Shared fixtures: a CLI runner, fresh plugin state per test, fake installed distributions."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

# One torch thread per test process (unless the caller sets it): ``-n 2`` runs two workers on
# two cores, and each with torch's default of a thread per core oversubscribes them (the
# OpenMP threads spin while they wait; the slow suite ran a fifth slower). Subprocesses
# inherit it; torch reads it when it is first imported, after this file.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parent.parent
# a subprocess that takes longer than this has hung: a guard, never the thing a test asserts
# (a busy machine may take many times the usual time; no test may fail because of that)
HANG_GUARD_S = 3600
RECIPES = REPO / "recipes"
DATA = REPO / "data"


@pytest.fixture(autouse=True)
def _fresh_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test sees plugins loaded anew, so installed fakes never leak between tests."""
    from wake2vec import plugins

    monkeypatch.delenv("WAKE2VEC_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("WAKE2VEC_DEBUG", raising=False)
    plugins.reset()
    yield
    plugins.reset()


@pytest.fixture(scope="session", autouse=True)
def _shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep built demo models out of the user's home; share them within the test session."""
    import os

    cache = tmp_path_factory.mktemp("wake2vec-cache")
    old = os.environ.get("WAKE2VEC_CACHE")
    os.environ["WAKE2VEC_CACHE"] = str(cache)
    yield
    if old is None:
        os.environ.pop("WAKE2VEC_CACHE", None)
    else:
        os.environ["WAKE2VEC_CACHE"] = old


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build) -> Path:
    """A folder ``build(folder)`` fills once for the whole test session, shared by the xdist
    workers (the first builds it under a file lock, the others wait and reuse it)."""
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the workers' temp folders sit side by side in it
    folder, done = shared / name, shared / f"{name}.done"
    with FileLock(str(shared / f"{name}.lock")):
        if not done.exists():
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            build(folder)
            done.touch()
    return folder


def need_asset(fetch, *args):
    """What ``fetch(*args)`` returns (a real tokenizer folder, the SmolLM2 GGUF); when it
    cannot be had the test skips with the reason, or fails where ``WAKE2VEC_REQUIRE_ASSETS=1``
    (CI: a skip there would hide exactly the defects real files find)."""
    import os

    from wake2vec.testing import REQUIRE_ENV, AssetUnavailable

    try:
        return fetch(*args)
    except AssetUnavailable as exc:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{exc} ({REQUIRE_ENV}=1: real assets are required)")
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def real_tokenizer():
    """``real_tokenizer("llama2")``: the folder of a studied model's own tokenizer files."""
    from wake2vec.testing import real_tokenizer_dir

    return lambda name: need_asset(real_tokenizer_dir, name)


@pytest.fixture
def cli():
    """Invoke the wake2vec CLI in-process; returns the click Result."""
    from wake2vec.cli import cli as group

    runner = CliRunner()

    def invoke(*args: str, **kwargs):
        return runner.invoke(group, list(args), catch_exceptions=False, **kwargs)

    return invoke


class FakeDistributions:
    """Installs fake distributions (a dist-info folder plus modules) on sys.path."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch):
        self.root = root
        monkeypatch.syspath_prepend(str(root))
        self._modules: list[str] = []

    def add(self, dist: str, version: str, entry_points: dict[str, str],
            modules: dict[str, str] | None = None) -> Path:
        info = self.root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        lines = ["[wake2vec]"] + [f"{name} = {target}" for name, target in entry_points.items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        for module, source in (modules or {}).items():
            path = self.root / (module.replace(".", "/") + ".py")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(source))
            self._modules.append(module)
        import importlib

        importlib.invalidate_caches()  # the finder caches directory listings
        return info

    def cleanup(self) -> None:
        for module in self._modules:
            sys.modules.pop(module, None)


@pytest.fixture
def fake_dists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDistributions]:
    fakes = FakeDistributions(tmp_path / "site", monkeypatch)
    yield fakes
    fakes.cleanup()


def write_recipe(path: Path, text: str) -> Path:
    """Write a recipe whose relative data paths point at the bundled demo data."""
    text = textwrap.dedent(text).replace("@DATA@", str(DATA))
    path.write_text(text, encoding="utf-8")
    return path
