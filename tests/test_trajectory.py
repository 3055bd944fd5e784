"""Snapshots every N steps and ``wake2vec trajectory``: drift, norms and overlap over training,
with a plot and an animation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import built_once
from helpers_inputs import run_recipe, set_args
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "three_phase.toml"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    settings = ["phases[0].steps=12", "phases[0].snapshot_every=4", "phases[1].steps=2",
                "phases[2].steps=6", "phases[2].snapshot_every=3", "phases[2].snapshot_rows=150",
                "phases[1].snapshot_every=1", "analysis.generation.enabled=false",
                "analysis.metrics=['drift']", *(f"phases[{i}].warmup_steps=0" for i in range(3))]

    def build(folder: Path) -> None:  # once per test session, shared by the xdist workers
        run_recipe(RECIPE, folder / "run", *set_args(*settings))

    return built_once(tmp_path_factory, "trajectory-run", build) / "run"


@pytest.mark.slow
def test_row_phases_keep_small_snapshots_and_lora_phases_none(run_dir):
    p1 = sorted(p.name for p in (run_dir / "01-p1" / "snapshots").iterdir())
    assert p1 == ["step-0000004.safetensors", "step-0000008.safetensors", "step-0000012.safetensors"]
    assert not (run_dir / "02-p2" / "snapshots").exists()  # LoRA adapters are not rows
    p3 = sorted((run_dir / "03-p3" / "snapshots").iterdir())
    assert len(p3) == 2
    # snapshot_rows: the same seeded 150 new rows in each P3 snapshot, and only those
    first, second = (load_file(str(p)) for p in p3)
    assert first["ids"].shape[0] == 150 and first["ids"].tolist() == second["ids"].tolist()
    assert first["input"].shape[0] == 150
    snap = load_file(str(run_dir / "01-p1" / "snapshots" / "step-0000012.safetensors"))
    final = load_file(str(run_dir / "01-p1" / "new_rows.safetensors"))
    rows = {k for k in final if not k.startswith("alias_")}  # the word-pair map is in the final file
    assert set(snap) == rows and snap["ids"].tolist() == final["ids"].tolist()
    assert snap["input"].dtype == final["input"].dtype
    # the snapshot holds rows only: the same size as the phase's rows file
    size = (run_dir / "01-p1" / "snapshots" / "step-0000012.safetensors").stat().st_size
    assert size <= 1.05 * (run_dir / "01-p1" / "new_rows.safetensors").stat().st_size


@pytest.mark.slow
def test_trajectory_follows_every_snapshot_and_writes_plot_and_gif(cli, run_dir):
    from PIL import Image

    result = cli("trajectory", str(run_dir), "--sample", "200")
    assert result.exit_code == 0, result.output
    data = json.loads((run_dir / "trajectory.json").read_text())
    labels = [s["label"] for s in data["snapshots"]]
    assert labels == ["injected", "p1 step 4", "p1 step 8", "p1 step 12", "after p1", "after p2",
                      "p3 step 3", "p3 step 6", "after p3"]
    first = data["snapshots"][0]
    assert first["drift_mean"] == pytest.approx(1.0) and first["overlap_mean"] == 1.0
    positions = [s["position"] for s in data["snapshots"]]
    assert positions == sorted(positions) and positions[-1] == 12 + 2 + 6
    assert data["snapshots"][3]["drift_mean"] < 1.0  # P1 moved the rows
    after_p1, after_p2 = data["snapshots"][4], data["snapshots"][5]
    assert after_p2["drift_mean"] == pytest.approx(after_p1["drift_mean"])  # LoRA leaves rows alone
    assert data["tokens"] == 150  # the tokens every snapshot holds (P3 kept 150)
    assert Image.open(run_dir / "trajectory.png").format == "PNG"
    gif = Image.open(run_dir / "trajectory.gif")
    assert gif.format == "GIF" and gif.n_frames == len(labels)


def test_trajectory_of_a_non_run_is_a_clear_error(cli, tmp_path):
    result = cli("trajectory", str(tmp_path))
    assert result.exit_code == 2 and "is not a wake2vec run directory" in result.output


def test_each_phase_line_starts_where_the_phase_started():
    from wake2vec.analysis.trajectory import segments

    def snap(label, phase, step, position):
        return {"label": label, "phase": phase, "step": step, "position": position}

    snaps = [snap("injected", "", 0, 0), snap("p1 step 10", "p1", 10, 10), snap("p1 step 20", "p1", 20, 20),
             snap("after p1", "p1", 20, 20), snap("after a", "a", 5, 15), snap("after b", "b", 5, 25),
             snap("after c", "c", 5, 25)]
    # a: from p1:step-10; b: from p1:step-20 (the snapshot, not the handed-on rows); c: after p1
    parents = {"p1": ("", False), "a": ("p1", True), "b": ("p1", True), "c": ("p1", False)}
    assert segments(snaps, parents) == [[0, 1, 2, 3], [1, 4], [2, 5], [3, 6]]
