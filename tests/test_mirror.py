"""``run.mirror_dir``: a copy of the run kept in sync, and a mirror that vanishes mid-run costs a
warning, not the run."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import HANG_GUARD_S
from wake2vec_plugins.observers.mirror import _make_folders, _try_sync, sync

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "three_phase.toml"
SHORT = (
    "--set", "phases[0].steps=30", "--set", "phases[0].eval_every=10",
    "--set", "phases[1].steps=2", "--set", "phases[2].steps=2",
    *(x for i in range(3) for x in ("--set", f"phases[{i}].warmup_steps=0")),
    "--set", "analysis.generation.enabled=false",
)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_sync_copies_changes_skips_lock_and_cache_and_prunes_checkpoints(tmp_path):
    run, mirror = tmp_path / "run", tmp_path / "drive" / "run"
    (run / "01-p1" / "checkpoints" / "step-0000010").mkdir(parents=True)
    (run / "01-p1" / "checkpoints" / "step-0000010" / "state.json").write_text("{}")
    (run / "manifest.json").write_text('{"status": "running"}')
    (run / "run.lock").write_text("123\n")
    (run / "cache").mkdir()
    (run / "cache" / "blocks.bin").write_bytes(b"x" * 10)
    (run / ".manifest.json.tmp").write_text("half")
    mirror.parent.mkdir()
    assert sync(run, mirror) == 2
    assert set(_files(mirror)) == {"manifest.json", "01-p1/checkpoints/step-0000010/state.json"}
    assert sync(run, mirror) == 0  # nothing changed, nothing copied
    (run / "manifest.json").write_text('{"status": "completed"}')
    shutil.rmtree(run / "01-p1" / "checkpoints" / "step-0000010")  # pruned locally
    assert sync(run, mirror) == 1
    assert _files(mirror) == {"manifest.json": b'{"status": "completed"}'}


def test_an_unavailable_mirror_is_a_warning(tmp_path, caplog):
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text("{}")
    gone = tmp_path / "unmounted" / "drive"
    with pytest.raises(OSError):
        sync(run, gone / "run")
    info = SimpleNamespace(run_dir=run, recipe={"run": {"mirror_dir": str(gone)}})
    with caplog.at_level(logging.WARNING, logger="wake2vec"):
        _try_sync(info, "a test")  # must not raise
    assert "is unavailable" in caplog.text and "training continues" in caplog.text
    assert not gone.exists(), "a vanished mirror must not be re-created on the local disk"


def test_a_drive_that_vanishes_during_a_sync_is_not_re_created(tmp_path):
    # the sync makes a checkpoint's folders below the mirror root one level at a time: with the
    # drive gone between two files, the next folder fails instead of re-creating drive and root
    drive = tmp_path / "drive"
    mirror = drive / "run"
    mirror.mkdir(parents=True)
    _make_folders(mirror, mirror / "01-p1" / "checkpoints" / "step-0000005")
    assert (mirror / "01-p1" / "checkpoints" / "step-0000005").is_dir()
    shutil.rmtree(drive)
    with pytest.raises(FileNotFoundError):
        _make_folders(mirror, mirror / "01-p1" / "checkpoints" / "step-0000010")
    assert not drive.exists()


def test_a_missing_mirror_folder_is_a_recipe_error(cli, tmp_path):
    result = cli("validate", str(RECIPE), "--set", f"run.mirror_dir='{tmp_path}/nowhere/mirror'")
    assert result.exit_code == 2
    assert "run.mirror_dir: its folder does not exist" in result.output


@pytest.mark.slow
def test_a_run_is_mirrored_and_survives_its_mirror_vanishing(tmp_path):
    drive = tmp_path / "drive"
    drive.mkdir()
    out = tmp_path / "runs" / "demo"
    cmd = [sys.executable, "-m", "wake2vec", "run", str(RECIPE), "--output-dir", str(out), *SHORT,
           "--set", f"run.mirror_dir='{drive}'"]
    # first: a whole run, mirrored
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    local, mirrored = _files(out), _files(drive / "demo")
    for name in ("manifest.json", "01-p1/metrics.json", "03-p3/new_rows.safetensors",
                 "final/model/config.json", "report.html"):
        assert mirrored[name] == local[name], name
    assert not any(name.startswith(("run.lock", "cache/")) for name in mirrored)
    assert {n for n in local if "/checkpoints/" in n} == {n for n in mirrored if "/checkpoints/" in n}

    # then: the mirror's drive disappears after the first checkpoint reaches it
    shutil.rmtree(drive)
    drive.mkdir()
    second = tmp_path / "runs" / "second"
    cmd[cmd.index(str(out))] = str(second)
    proc = subprocess.Popen(cmd + ["--set", "phases[0].steps=15", "--set", "phases[0].eval_every=5",
                                   "--set", "phases[0].save_every=5"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    pulled = threading.Event()

    def pull_the_drive() -> None:
        deadline = time.monotonic() + HANG_GUARD_S
        while time.monotonic() < deadline and proc.poll() is None:
            if any((drive / "second").glob("01-p1/checkpoints/step-*/state.json")):
                # a sync may be writing into a folder rmtree has listed (its rmdir then fails):
                # pull until nothing is left, as an unmount would
                while drive.exists() and time.monotonic() < deadline:
                    shutil.rmtree(drive, ignore_errors=True)
                pulled.set()
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=pull_the_drive)
    watcher.start()
    _, err = proc.communicate(timeout=HANG_GUARD_S)
    watcher.join()
    assert pulled.is_set(), "the run ended before its first checkpoint reached the mirror"
    assert proc.returncode == 0, err[-3000:]
    assert "is unavailable" in err and "training continues" in err
    assert not drive.exists()
    assert (second / "final" / "model" / "config.json").is_file()
