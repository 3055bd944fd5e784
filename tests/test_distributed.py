"""The demo recipe under ``accelerate launch`` with 2 CPU processes (gloo) gives the losses of the
single-process run, and only the main process writes the run directory."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HANG_GUARD_S, RECIPES, built_once

pytestmark = pytest.mark.slow

# few steps, evaluation twice per phase; dropout off in the LoRA phase, because each process
# draws dropout masks for its own share of the batch, which a single process draws differently
SETTINGS = ["--set", "phases[0].steps=6", "--set", "phases[0].eval_every=3",
            "--set", "phases[1].steps=4", "--set", "phases[1].eval_every=2",
            "--set", "phases[1].params.dropout=0.0",
            "--set", "phases[2].steps=4", "--set", "phases[2].eval_every=2",
            "--set", "report.html=false"]

# Relative tolerance on losses, bits per byte and gradient norms. Two processes compute the NLL
# of half a batch each (other matrix shapes, so float32 sums in another order) and DDP averages
# their gradients; measured differences are about 5e-7 on losses of about 7.5 (relative 7e-8).
# 1e-5 leaves two orders of magnitude for other CPUs and thread counts. Real faults are far
# larger: a loss not reduced over the processes is half the true one, and the wrong blocks give
# other losses at once. A schedule stepped once per process shows in the learning rates, which
# must agree to 1e-12.
RTOL = 1e-5


PROBE = """
import sys, torch.distributed as dist
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{sys.argv[1]}", rank=0, world_size=1)
dist.barrier()
dist.destroy_process_group()
"""


def _gloo_available() -> bool:
    """Whether accelerate is installed and a gloo process group can start on this machine."""
    try:
        import accelerate  # noqa: F401
        import torch.distributed as dist
    except ImportError:
        return False
    if not (dist.is_available() and dist.is_gloo_available()):
        return False
    probe = subprocess.run([sys.executable, "-c", PROBE, str(_free_port())],
                           capture_output=True, text=True, timeout=HANG_GUARD_S)
    return probe.returncode == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


KILLER = """
\"\"\"Test plugin: SIGKILL the process that saved a chosen checkpoint (the main one).\"\"\"
import os, signal
from wake2vec import hookimpl

@hookimpl
def wake2vec_checkpoint_saved(run, phase, step, path):
    if os.environ.get("WAKE2VEC_TEST_KILL", "") == f"checkpoint:{phase.name}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)
"""

_EXTRA_ENV: dict[str, str] = {}


def _env() -> dict[str, str]:
    # CPU processes even where a GPU is present; one thread each on a small machine
    return dict(os.environ, ACCELERATE_USE_CPU="1", CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1",
                **_EXTRA_ENV)


def _single(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wake2vec", "run",
                           str(RECIPES / "three_phase.toml"), "--output-dir", str(out),
                           *SETTINGS, *extra],
                          capture_output=True, text=True, env=_env(), timeout=HANG_GUARD_S)


def _launched(out: Path, *extra: str) -> subprocess.CompletedProcess:
    # --multi_gpu selects accelerate's torchrun launcher; on CPU (ACCELERATE_USE_CPU) wake2vec
    # joins a gloo process group. (--cpu alone starts a single process without mpirun.)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
              "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
              "--dynamo_backend", "no", "--main_process_port", str(_free_port())]
    return subprocess.run([*launch, "-m", "wake2vec", "run", str(RECIPES / "three_phase.toml"),
                           "--output-dir", str(out), *SETTINGS, *extra],
                          capture_output=True, text=True, env=_env(), timeout=HANG_GUARD_S)


def _history(run_dir: Path, phase: str) -> list[dict]:
    lines = (run_dir / phase / "history.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _timeless(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "elapsed_s"} for row in rows]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    if not _gloo_available():
        pytest.skip("accelerate or torch.distributed with gloo is not available")

    def build(root: Path) -> None:  # once per test session, shared by the xdist workers
        single = _single(root / "single")  # also builds the demo model the launched run reuses
        assert single.returncode == 0, single.stderr[-3000:]
        launched = _launched(root / "two")
        assert launched.returncode == 0, launched.stderr[-5000:]

    root = built_once(tmp_path_factory, "distributed", build)
    return root / "single", root / "two"


def test_two_processes_match_the_single_process_losses(runs):
    single, two = runs
    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["status"] == "completed"
    assert manifest["sessions"][-1]["processes"] == 2  # it really ran on two processes
    for phase in ("01-p1", "02-p2", "03-p3"):
        mine, reference = _history(two, phase), _history(single, phase)
        # one writer: every step logged once, in order
        assert [(r["step"], r["kind"]) for r in mine] == [(r["step"], r["kind"]) for r in reference]
        for got, want in zip(mine, reference, strict=True):
            where = (phase, want["step"], want["kind"])
            if want["kind"] == "train":
                assert got["train_loss"] == pytest.approx(want["train_loss"], rel=RTOL), where
                assert got["grad_norm"] == pytest.approx(want["grad_norm"], rel=1e-4), where
                # the schedule advances once per optimiser step, not once per process
                assert got["learning_rate"] == pytest.approx(want["learning_rate"], rel=1e-12), \
                    where
            else:
                for key in ("val_loss", "bits_per_byte", "train_loss"):
                    assert got[key] == pytest.approx(want[key], rel=RTOL), (*where, key)
                # the processes' shares of the validation blocks add up to all of them
                assert (got["val_tokens"], got["val_bytes"]) == \
                    (want["val_tokens"], want["val_bytes"]), where
        final = json.loads((two / phase / "metrics.json").read_text())["evaluation"]
        expected = json.loads((single / phase / "metrics.json").read_text())["evaluation"]
        assert final["val_loss"] == pytest.approx(expected["val_loss"], rel=RTOL), phase


def test_only_the_main_process_writes_and_fires_hooks(runs):
    single, two = runs
    events = (two / "events.jsonl").read_text().splitlines()
    assert len(events) == len((single / "events.jsonl").read_text().splitlines())
    assert sorted(p.name for p in (two / "01-p1" / "checkpoints").iterdir()) == \
        sorted(p.name for p in (single / "01-p1" / "checkpoints").iterdir())
    assert (two / "final" / "model" / "model.safetensors").is_file()
    # the main process holds the lock, and the run log holds one copy of each line
    manifest = json.loads((two / "manifest.json").read_text())
    assert (two / "run.lock").read_text().strip() == str(manifest["sessions"][-1]["pid"])
    log = (two / "run.log").read_text()
    assert log.count("phase p1 done") == 1


def test_launched_run_refuses_an_existing_directory_on_every_process(runs):
    _, two = runs
    proc = _launched(two)  # no --force, no --resume
    assert proc.returncode != 0
    assert "already exists" in proc.stderr
    assert json.loads((two / "manifest.json").read_text())["status"] == "completed"  # untouched


@pytest.fixture
def killer(tmp_path, monkeypatch) -> Path:
    site = tmp_path / "killer-site"
    info = site / "wake2vec_killer-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "wake2vec_killer.py").write_text(KILLER)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: wake2vec-killer\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[wake2vec]\nkiller = wake2vec_killer\n")
    monkeypatch.setitem(_EXTRA_ENV, "PYTHONPATH", str(site))
    return site


def test_two_processes_killed_and_resumed_are_bit_identical(runs, killer, tmp_path, monkeypatch):
    import torch
    from safetensors.torch import load_file

    _, reference = runs
    out = tmp_path / "run"
    monkeypatch.setitem(_EXTRA_ENV, "WAKE2VEC_TEST_KILL", "checkpoint:p2:2")
    first = _launched(out)
    assert first.returncode != 0  # the main process was killed; the launcher stopped the other
    assert json.loads((out / "manifest.json").read_text())["status"] == "running"
    monkeypatch.setitem(_EXTRA_ENV, "WAKE2VEC_TEST_KILL", "")
    second = _launched(out, "--resume")
    assert second.returncode == 0, second.stderr[-5000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "completed"
    assert manifest["phases"]["p2"]["evaluation"]["resumed_from"] == 2
    for phase in ("01-p1", "02-p2", "03-p3"):
        # every logged value but the wall-clock time
        assert _timeless(_history(out, phase)) == _timeless(_history(reference, phase)), phase
        mine = load_file(str(out / phase / "new_rows.safetensors"))
        theirs = load_file(str(reference / phase / "new_rows.safetensors"))
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs), phase
    final = load_file(str(out / "final/model/model.safetensors"))
    expected = load_file(str(reference / "final/model/model.safetensors"))
    assert all(torch.equal(final[k], expected[k]) for k in expected)
