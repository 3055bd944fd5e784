"""The demo recipe made tiny for tests that run it through the CLI (bad input, safety)."""

from __future__ import annotations

from pathlib import Path

from conftest import DATA, RECIPES

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
