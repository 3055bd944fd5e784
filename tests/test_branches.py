"""Regime branches: a phase that starts from a named checkpoint of an earlier phase."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import HANG_GUARD_S, built_once
from helpers_inputs import run_recipe

from wake2vec.errors import UserInputError
from wake2vec.recipe import load_recipe
from wake2vec.rundir.directory import RunDir
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
    ("p1:regime=roasted", "String should match pattern"),
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
    def build(folder: Path) -> None:  # once per test session, shared by the xdist workers
        run_recipe(RECIPE, folder / "run", *SETTINGS, "--set", "phases[2].from='p1:regime=improving'")

    return built_once(tmp_path_factory, "branch-run", build) / "run"


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


# ------------------------------------------------------------------ several branches of a phase

BRANCHES = REPO / "recipes" / "branches.toml"
BRANCH_SETTINGS = (
    "--set", "phases[0].steps=20", "--set", "phases[0].eval_every=5", "--set", "phases[0].snapshot_every=0",
    *(x for i in (1, 2) for x in ("--set", f"phases[{i}].steps=4", "--set", f"phases[{i}].eval_every=2")),
    *(x for i in range(3) for x in ("--set", f"phases[{i}].warmup_steps=0")),
    "--set", "analysis.generation.enabled=false", "--set", "analysis.metrics=['drift']",
)


def test_parents_and_lineage_follow_from():
    from wake2vec.recipe.schema import lineage, phase_parents

    parents = phase_parents([("p1", "best"), ("a", "p1:best"), ("b", "p1:last"), ("c", "last"),
                             ("d", "a:step-3")])
    assert parents == [None, 0, 0, 2, 1]
    assert lineage(parents, 3) == [0, 2, 3] and lineage(parents, 4) == [0, 1, 4]
    assert load_recipe(str(BRANCHES)).parents() == [None, 0, 0]


@pytest.fixture(scope="module")
def two_branches(tmp_path_factory) -> Path:
    """Built once per test session and shared by the xdist workers: tests that write into the
    run work on a copy."""

    def build(folder: Path) -> None:
        run_recipe(BRANCHES, folder / "run", *BRANCH_SETTINGS)

    return built_once(tmp_path_factory, "two-branches", build) / "run"


@pytest.mark.slow
def test_two_p2_branches_start_from_p1_best_and_last_in_their_own_folders(two_branches):
    manifest = json.loads((two_branches / "manifest.json").read_text())
    assert [manifest["phases"][p]["status"] for p in ("p1", "p2-best", "p2-last")] == ["completed"] * 3
    history = [json.loads(line) for line in (two_branches / "01-p1" / "history.jsonl").read_text().splitlines()]
    evals = {r["step"]: r["val_loss"] for r in history if r["kind"] == "eval"}
    best = min(evals, key=evals.get)
    assert manifest["phases"]["p2-best"]["started_from"]["step"] == best
    assert manifest["phases"]["p2-last"]["started_from"]["step"] == 20
    for folder in ("02-p2-best", "03-p2-last"):
        assert (two_branches / folder / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_the_last_branch_is_built_on_p1_alone_not_on_the_other_branch(two_branches):
    """The final model is the base model + P1's rows + p2-last's merged adapter: p2-best's adapter,
    trained just before, is not in it."""
    from safetensors.torch import load_file

    manifest = json.loads((two_branches / "manifest.json").read_text())
    base = load_file(str(Path(manifest["model"]["source"]) / "model.safetensors"))
    final = load_file(str(two_branches / "final" / "model" / "model.safetensors"))

    def delta(folder: str, module: str) -> torch.Tensor:
        adapter = load_file(str(two_branches / folder / "adapter" / "adapter_model.safetensors"))
        config = json.loads((two_branches / folder / "adapter" / "adapter_config.json").read_text())
        a = next(v for k, v in adapter.items() if module in k and "lora_A" in k)
        b = next(v for k, v in adapter.items() if module in k and "lora_B" in k)
        return (b @ a) * (config["lora_alpha"] / config["r"])

    module = "layers.0.self_attn.q_proj"
    key = f"model.{module}.weight"
    change = final[key] - base[key]
    assert torch.allclose(change, delta("03-p2-last", module), atol=1e-5)
    assert not torch.allclose(change, delta("03-p2-last", module) + delta("02-p2-best", module), atol=1e-5)


@pytest.mark.slow
def test_the_report_compares_the_branches(two_branches):
    report = json.loads((two_branches / "report.json").read_text())
    (group,) = report["branches"]
    assert group["parent"] == "p1"
    rows = {r["name"]: r for r in group["rows"]}
    assert rows.keys() == {"p2-best", "p2-last"}
    assert rows["p2-best"]["from"] == "p1:best" and rows["p2-last"]["from"] == "p1:last"
    for r in rows.values():
        assert r["change"] == pytest.approx(r["val_loss"] - r["start_val_loss"])
        assert r["eval"]["step"][0] == 0 and r["eval"]["val_loss"][0] == pytest.approx(r["start_val_loss"])
    assert sum(r["lowest"] for r in rows.values()) == 1
    html = (two_branches / "report.html").read_text()
    assert "Branches from phase p1" in html and 'href="#branches"' in html
    assert "Validation loss and bits per byte of each branch from phase p1" in html
    assert (two_branches / "branches-p1.png").is_file()
    # the curves put each branch where it started: p2-best at P1's best step, p2-last at its end
    offsets = {c["name"]: c["offset"] for c in report["curves"]}
    assert offsets == {"p1": 0, "p2-best": rows["p2-best"]["start_step"], "p2-last": 20}


@pytest.mark.slow
def test_analyze_measures_each_branch_from_its_own_start(cli, two_branches, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(two_branches, copy)  # analyze rewrites the run it reads
    result = cli("analyze", str(copy))
    assert result.exit_code == 0, result.output
    for folder, start in (("02-p2-best", "p1:best"), ("03-p2-last", "p1:last")):
        drift = json.loads((copy / folder / "metrics.json").read_text())["analysis"]["drift"]
        assert drift["before"] == start


@pytest.mark.slow
def test_trajectory_places_each_branch_at_its_start(two_branches):
    from wake2vec.analysis.trajectory import frames

    manifest = json.loads((two_branches / "manifest.json").read_text())
    best = manifest["phases"]["p2-best"]["started_from"]["step"]
    positions = {f.label: f.position for f in frames(two_branches)}
    assert positions["after p1"] == 20
    assert positions["after p2-best"] == best + 4 and positions["after p2-last"] == 20 + 4


@pytest.mark.slow
def test_a_branch_killed_mid_phase_resumes_to_the_same_result(two_branches, tmp_path):
    """SIGKILL after p2-last's first checkpoint, then --resume: the completed phases are restored,
    the branch's model is rebuilt from P1 and training continues to the uninterrupted result."""
    import os

    from helpers_inputs import plugin_site
    from safetensors.torch import load_file
    from test_resume_kill import KILLER

    (tmp_path / "site").mkdir()
    site = plugin_site(tmp_path / "site", "wake2vec_killer", KILLER)
    out = tmp_path / "run"
    env = dict(os.environ, WAKE2VEC_TEST_KILL="checkpoint:p2-last:2",
               PYTHONPATH=os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p))
    killed = subprocess.run([sys.executable, "-m", "wake2vec", "run", str(BRANCHES), "--output-dir", str(out),
                             *BRANCH_SETTINGS], capture_output=True, text=True, timeout=HANG_GUARD_S, env=env)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert json.loads((out / "manifest.json").read_text())["phases"]["p2-last"]["status"] == "running"
    run_recipe(BRANCHES, out, *BRANCH_SETTINGS, "--resume")
    for name in ("final/model/model.safetensors", "02-p2-best/adapter/adapter_model.safetensors",
                 "03-p2-last/adapter/adapter_model.safetensors", "03-p2-last/new_rows.safetensors"):
        mine, reference = load_file(str(out / name)), load_file(str(two_branches / name))
        assert mine.keys() == reference.keys()
        assert all(torch.equal(mine[k], reference[k]) for k in reference), name
