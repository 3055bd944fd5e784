"""``wake2vec archive`` / ``unpack``: a run shipped as one file comes back the same, and a
tampered or hostile archive is refused."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import HANG_GUARD_S, built_once

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "three_phase.toml"
SHORT = (
    "--set", "phases[0].steps=3", "--set", "phases[1].steps=2", "--set", "phases[2].steps=2",
    *(x for i in range(3) for x in ("--set", f"phases[{i}].warmup_steps=0")),
    "--set", "analysis.generation.temperatures=[1.0]", "--set", "analysis.generation.max_new_tokens=8",
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A short run, built once per test session (the xdist workers share it; tests that write
    into a run work on a copy)."""

    def build(folder: Path) -> None:
        proc = subprocess.run(
            [sys.executable, "-m", "wake2vec", "run", str(RECIPE), "--output-dir", str(folder / "demo"),
             *SHORT],
            capture_output=True, text=True, timeout=HANG_GUARD_S)
        assert proc.returncode == 0, proc.stderr[-3000:]

    return built_once(tmp_path_factory, "archive-run", build) / "demo"


def _compare_rows(cli, *runs: Path) -> list[tuple]:
    result = cli("compare", "--format", "json", *map(str, runs))
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["rows"]
    return [(r["section"], r["label"], r["values"]) for r in rows if r["label"] != "folder"]


@pytest.mark.slow
def test_an_unpacked_archive_compares_exactly_like_the_original(cli, run_dir, tmp_path):
    archive = tmp_path / "demo.tar.gz"
    result = cli("archive", str(run_dir), "-o", str(archive))
    assert result.exit_code == 0, result.output
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert all(n.startswith("demo/") for n in names)
    assert "demo/ARCHIVE.json" in names and "demo/manifest.json" in names
    assert "demo/injected_rows.safetensors" in names and "demo/02-p2/adapter/adapter_config.json" in names
    assert not any(n.startswith("demo/final/") or n.endswith("run.lock") for n in names)
    assert any("/checkpoints/" in n for n in names)

    unpacked = tmp_path / "elsewhere" / "demo"
    result = cli("unpack", str(archive), "-d", str(unpacked))
    assert result.exit_code == 0, result.output
    original, restored = _compare_rows(cli, run_dir), _compare_rows(cli, unpacked)
    assert restored == original
    assert _compare_rows(cli, run_dir, unpacked) == [
        (s, label, values * 2) for s, label, values in original]
    status = cli("status", "--json", str(unpacked))
    assert status.exit_code == 0 and json.loads(status.output)[0]["status"] == "completed"
    for phase in ("01-p1", "02-p2", "03-p3"):
        assert (unpacked / phase / "metrics.json").read_bytes() == (run_dir / phase / "metrics.json").read_bytes()

    again = cli("unpack", str(archive), "-d", str(unpacked))
    assert again.exit_code == 2 and "already exists; pass --force" in again.output
    assert cli("unpack", str(archive), "-d", str(unpacked), "--force").exit_code == 0


@pytest.mark.slow
def test_analyze_works_on_an_archive_without_the_final_model(cli, run_dir, tmp_path):
    archive = tmp_path / "small.tar.gz"
    assert cli("archive", str(run_dir), "-o", str(archive), "--no-checkpoints").exit_code == 0
    with tarfile.open(archive) as tar:
        assert not any("/checkpoints/" in n for n in tar.getnames())
    unpacked = tmp_path / "small"
    assert cli("unpack", str(archive), "-d", str(unpacked)).exit_code == 0
    result = cli("analyze", str(unpacked), "--metric", "drift", "--metric", "norms")
    assert result.exit_code == 0, result.output
    for phase in ("01-p1", "02-p2", "03-p3"):
        redone = json.loads((unpacked / phase / "metrics.json").read_text(encoding="utf-8"))["analysis"]
        original = json.loads((run_dir / phase / "metrics.json").read_text(encoding="utf-8"))["analysis"]
        assert redone["drift"]["new"]["mean"] == pytest.approx(original["drift"]["new"]["mean"], abs=1e-9)
        assert redone["norms"]["after"]["cohens_d"] == pytest.approx(original["norms"]["after"]["cohens_d"], abs=1e-9)
    manifest = json.loads((unpacked / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["analyses"][-1] == {"metrics": ["drift", "norms"], "generation": False, "final_model": False}

    # trajectory too: the base rows come from the base model, loaded as the run loaded it
    result = cli("trajectory", str(unpacked), "--sample", "100")
    assert result.exit_code == 0, result.output
    original = tmp_path / "original"
    shutil.copytree(run_dir, original)  # trajectory writes into the run it reads
    assert cli("trajectory", str(original), "--sample", "100").exit_code == 0
    redone, original = (json.loads((d / "trajectory.json").read_text()) for d in (unpacked, original))
    assert [s["label"] for s in redone["snapshots"]] == ["injected", "after p1", "after p2", "after p3"]
    assert redone["snapshots"] == original["snapshots"]


def test_a_damaged_archive_is_refused_and_nothing_is_left(cli, tmp_path):
    good = tmp_path / "run"
    good.mkdir()
    (good / "manifest.json").write_text("{}")
    (good / "run.log").write_text("log\n")
    archive = tmp_path / "run.tar.gz"
    assert cli("archive", str(good), "-o", str(archive)).exit_code == 0
    # rewrite run.log inside the archive: its checksum no longer matches the index
    damaged = tmp_path / "damaged.tar.gz"
    with tarfile.open(archive) as src, tarfile.open(damaged, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()
            if member.name.endswith("run.log"):
                data = b"changed\n"
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    result = cli("unpack", str(damaged), "-d", str(tmp_path / "out"))
    assert result.exit_code == 2 and "run.log is missing or damaged" in result.output
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".wake2vec-unpack-*"))


@pytest.mark.parametrize("name", ["../escape.txt", "/etc/evil.txt"])
def test_an_archive_reaching_outside_its_folder_is_refused(cli, tmp_path, name):
    hostile = tmp_path / "hostile.tar.gz"
    with tarfile.open(hostile, "w:gz") as tar:
        for member_name, data in ((name, b"x"),):
            info = tarfile.TarInfo(member_name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    result = cli("unpack", str(hostile), "-d", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert not (tmp_path / "escape.txt").exists()


def test_archive_of_a_non_run_and_unpack_of_a_non_archive(cli, tmp_path):
    result = cli("archive", str(tmp_path))
    assert result.exit_code == 2 and "is not a wake2vec run directory" in result.output
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tar file")
    result = cli("unpack", str(junk))
    assert result.exit_code == 2 and "is not a readable tar archive" in result.output
