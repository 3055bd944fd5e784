"""The demo recipe made tiny for tests that run it through the CLI (bad input, safety), and
helpers for tests that run wake2vec in a child process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import DATA, HANG_GUARD_S, RECIPES

# one tiny phase and cheap analysis, so that a run of the demo recipe takes seconds
TINY: tuple[str, ...] = (
    'phases=[{name="p1", strategy="embed-only", steps=1, learning_rate=5e-3, batch_size=2, '
    "eval_batches=1}]",
    'analysis.metrics=["norms"]',
    "analysis.generation.enabled=false",
    "report.html=false",
    "injection.initializer=spherical",
)


def demo_recipe(folder: Path) -> Path:
    """A copy of recipes/three_phase.toml in ``folder``, its data paths made absolute (so that
    relative paths in ``--set`` overrides resolve against ``folder``)."""
    recipe = folder / "three_phase.toml"
    text = (RECIPES / "three_phase.toml").read_text(encoding="utf-8")
    recipe.write_text(text.replace("../data", str(DATA)), encoding="utf-8")
    return recipe


def set_args(*overrides: str) -> list[str]:
    """``--set`` arguments for each override."""
    return [arg for override in overrides for arg in ("--set", override)]


def run_recipe(recipe: Path, out: Path, *args: str, timeout: int = HANG_GUARD_S) -> Path:
    """``wake2vec run RECIPE --output-dir OUT ARGS`` in a fresh process; fails the test with the
    end of its stderr unless it exits 0. Returns ``out``."""
    proc = subprocess.run(
        [sys.executable, "-m", "wake2vec", "run", str(recipe), "--output-dir", str(out), *args],
        capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def plugin_site(folder: Path, module: str, source: str) -> Path:
    """A folder that, on PYTHONPATH, installs ``source`` as the module ``module`` of a
    distribution with a ``wake2vec`` entry point (a test-only plugin for a child process)."""
    (folder / f"{module}.py").write_text(textwrap.dedent(source))
    dist = module.replace("_", "-")
    info = folder / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[wake2vec]\n{module.split('_', 1)[1]} = {module}\n")
    return folder
