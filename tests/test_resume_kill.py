"""Kill -9 in the middle of a phase, resume, and get bit-identical results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HANG_GUARD_S, RECIPES, built_once
from helpers_inputs import plugin_site

pytestmark = pytest.mark.slow

SETTINGS = ["--set", "phases[0].steps=12", "--set", "phases[0].eval_every=4",
            "--set", "phases[1].steps=8", "--set", "phases[1].eval_every=4",
            "--set", "phases[2].steps=6", "--set", "phases[2].eval_every=3"]

KILLER = '''
"""Test plugin: SIGKILL this process right after a chosen checkpoint or evaluation."""
import os, signal
from wake2vec import hookimpl

def _target():
    return os.environ.get("WAKE2VEC_TEST_KILL", "")

@hookimpl
def wake2vec_checkpoint_saved(run, phase, step, path):
    if _target() == f"checkpoint:{phase.name}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)

@hookimpl
def wake2vec_evaluation(run, phase, step, metrics):
    if _target() == f"evaluation:{phase.name}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)
'''


@pytest.fixture(scope="module")
def killer_path(tmp_path_factory) -> Path:
    return plugin_site(tmp_path_factory.mktemp("killer-site"), "wake2vec_killer", KILLER)


def _run(out: Path, site: Path, *extra: str, kill: str = "") -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(site), WAKE2VEC_TEST_KILL=kill)
    return subprocess.run([sys.executable, "-m", "wake2vec", "run", str(RECIPES / "three_phase.toml"),
                           "--output-dir", str(out), *SETTINGS, *extra],
                          capture_output=True, text=True, env=env, timeout=HANG_GUARD_S)


def _losses(run_dir: Path, phase: str) -> list[tuple[int, str, float]]:
    rows = [json.loads(line) for line in (run_dir / phase / "history.jsonl").read_text().splitlines()]
    return [(r["step"], r["kind"], r.get("train_loss") if r["kind"] == "train" else r["val_loss"])
            for r in rows]


def _tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, killer_path) -> Path:
    """The run never killed, built once per test session (the xdist workers share it)."""

    def build(folder: Path) -> None:
        proc = _run(folder / "run", killer_path)
        assert proc.returncode == 0, proc.stderr[-3000:]

    return built_once(tmp_path_factory, "uninterrupted", build) / "run"


@pytest.mark.parametrize("kill", [
    "checkpoint:p1:4",      # right after P1's first checkpoint
    "evaluation:p1:8",      # after an evaluation, before its checkpoint is written
    "checkpoint:p2:4",      # in the middle of the LoRA phase
])
def test_kill_and_resume_is_bit_identical(tmp_path, killer_path, uninterrupted, kill):
    import torch

    out = tmp_path / "run"
    first = _run(out, killer_path, kill=kill)
    assert first.returncode == -9, first.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "running"  # killed: nothing got to mark it finished
    second = _run(out, killer_path, "--resume")
    assert second.returncode == 0, second.stderr[-3000:]
    assert json.loads((out / "manifest.json").read_text())["status"] == "completed"
    for phase in ("01-p1", "02-p2", "03-p3"):
        assert _losses(out, phase) == _losses(uninterrupted, phase), phase
        mine, theirs = _tensors(out / phase / "new_rows.safetensors"), \
            _tensors(uninterrupted / phase / "new_rows.safetensors")
        assert mine.keys() == theirs.keys()
        for key in mine:
            assert torch.equal(mine[key], theirs[key]), (phase, key)
    final, reference = _tensors(out / "final/model/model.safetensors"), \
        _tensors(uninterrupted / "final/model/model.safetensors")
    for key in reference:
        assert torch.equal(final[key], reference[key]), key


def test_same_recipe_and_seed_give_identical_metrics(tmp_path, killer_path, uninterrupted):
    out = tmp_path / "again"
    proc = _run(out, killer_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for phase in ("01-p1", "02-p2", "03-p3"):
        assert (out / phase / "metrics.json").read_bytes() == \
            (uninterrupted / phase / "metrics.json").read_bytes(), phase
    assert (out / "injection.json").read_text().replace(str(out), "") != ""
