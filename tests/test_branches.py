"""Regime branches: a phase that starts from a named checkpoint of an earlier phase."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from wake2vec.errors import UserInputError
from wake2vec.recipe import load_recipe
from wake2vec.rundir import RunDir
from wake2vec.runner import start_from_checkpoint

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "three_phase.toml"
SETTINGS = (
    "--set", "phases[0].steps=30", "--set", "phases[0].eval_every=5", "--set", "phases[0].keep_last=10",
    "--set", "phases[1].steps=2", "--set", "phases[2].steps=3",
    *(x for i in range(3) for x in ("--set", f"phases[{i}].warmup_steps=0")),
    "--set", "analysis.generation.enabled=false", "--set", "analysis.metrics=['drift']",
)


@pytest.mark.parametrize("start, message", [
    ("p9:best", "starts from 'p9:best', but 'p9' is not an earlier phase (earlier: p1, p2)"),
    ("p3:best", "'p3' is not an earlier phase"),
    ("p1:middle", "String should match pattern"),
    ("p1:regime=fried", "String should match pattern"),
])
def test_a_bad_start_is_a_recipe_error(cli, start, message):
    result = cli("validate", str(RECIPE), "--set", f"phases[2].from='{start}'")
    assert result.exit_code == 2 and message in result.output, result.output


def test_every_selector_form_validates():
    for start in ("best", "last", "p1:best", "p1:last", "p1:step-40", "p1:regime=plateau",
                  "p2:regime=overfitting", "p1:regime=improving"):
        assert load_recipe(str(RECIPE), [f"phases[2].from='{start}'"]).phases[2].start_from == start


@pytest.fixture(scope="module")
def branched(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("branch") / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "wake2vec", "run", str(RECIPE), "--output-dir", str(out), *SETTINGS,
         "--set", "phases[2].from='p1:regime=improving'"],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.slow
def test_p3_starts_from_the_latest_improving_checkpoint_of_p1(branched):
    history = [json.loads(line) for line in (branched / "01-p1" / "history.jsonl").read_text().splitlines()]
    kept = {int(p.name.split("-")[1]) for p in (branched / "01-p1" / "checkpoints").iterdir()}
    improving = [r["step"] for r in history if r["kind"] == "eval" and r["regime"] == "improving"]
    expected = max(s for s in improving if s in kept)
    record = json.loads((branched / "manifest.json").read_text())["phases"]["p3"]
    assert record["started_from"]["step"] == expected
    assert record["started_from"]["checkpoint"] == f"01-p1/checkpoints/step-{expected:07d}"
    # P3's "before" snapshot is the branch point, and it is P1's rows at that step
    drift = json.loads((branched / "03-p3" / "metrics.json").read_text())["analysis"]["drift"]
    assert drift["before"] == "p1:regime=improving"


@pytest.mark.slow
def test_missing_checkpoints_and_lora_sources_are_refused_with_the_fix(branched):
    recipe = load_recipe(str(RECIPE), list(SETTINGS[1::2]))
    run = RunDir.follow(branched)
    with pytest.raises(UserInputError, match=r"phase 'p1' has no such checkpoint \(kept steps: 5, 10"):
        start_from_checkpoint(run, recipe, "p1:step-7", model=None)
    with pytest.raises(UserInputError, match="trains no embedding rows"):
        start_from_checkpoint(run, recipe, "p2:last", model=None)
