"""The wheel carries every plugin package, the templates and the console script."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import HANG_GUARD_S, REPO


@pytest.mark.slow
def test_wheel_contains_every_plugin(tmp_path: Path):
    from wake2vec.plugins import BUILTIN_PLUGINS

    proc = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(REPO)],
        capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    wheel = next(tmp_path.glob("wake2vec-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in BUILTIN_PLUGINS:
        assert module.replace(".", "/") + ".py" in names, module
    for package in sorted((REPO / "plugins").rglob("__init__.py")):
        rel = package.relative_to(REPO / "plugins")
        assert f"wake2vec_plugins/{rel.as_posix()}" in names
    assert "wake2vec/templates/report.html" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "wake2vec = wake2vec.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
