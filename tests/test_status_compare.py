"""``wake2vec status`` and ``wake2vec compare`` on real run directories: finished, damaged, live."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import HANG_GUARD_S, built_once

from wake2vec.rundir.reading import read_jsonl
from wake2vec.rundir.status import run_status

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "three_phase.toml"
SHORT = (
    "--set",
    "phases[0].steps=4",
    "--set",
    "phases[1].steps=2",
    "--set",
    "phases[2].steps=2",
    *(x for i in range(3) for x in ("--set", f"phases[{i}].warmup_steps=0")),
)


def _run(out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "wake2vec", "run", str(RECIPE), "--output-dir", str(out), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode == 0, err[-3000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    """Two short demo runs made once, side by side: the second with a byte-level tokenizer of a
    smaller vocabulary (the first is SentencePiece-style). Built in parallel: they share nothing
    but the CPU."""

    def build(root: Path) -> None:  # once per test session, shared by the xdist workers
        a = _run(root / "demo", *SHORT)
        b = _run(
            root / "small-vocab", *SHORT, "--set", "model.params.vocab_size=800",
            "--set", "run.name=small-vocab", "--set", "model.params.tokenizer=byte-level",
        )
        _finish(a)
        _finish(b)

    root = built_once(tmp_path_factory, "status-runs", build)
    return root / "demo", root / "small-vocab"


def _status_json(cli, *paths: Path) -> list[dict]:
    result = cli("status", "--json", *map(str, paths))
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


# ----------------------------------------------------------------------------- status


def test_status_of_a_finished_run(cli, runs):
    demo, _ = runs
    [status] = _status_json(cli, demo)
    assert status["status"] == "completed"
    assert status["writer"]["alive"] is False
    assert [p["name"] for p in status["phases"]] == ["p1", "p2", "p3"]
    p1 = status["phases"][0]
    assert (p1["step"], p1["total_steps"], p1["status"]) == (4, 4, "completed")
    history = read_jsonl(demo / "01-p1" / "history.jsonl")
    last_eval = [r for r in history if r.get("kind") == "eval"][-1]
    assert p1["val_loss"] == pytest.approx(last_eval["val_loss"])
    assert p1["bits_per_byte"] == pytest.approx(last_eval["bits_per_byte"])
    assert p1["best_val_step"] == 4
    assert [(c["name"], c["valid"]) for c in p1["checkpoints"]] == [("step-0000004", True)]
    assert status["current_phase"]["name"] == "p3"
    assert all(
        status["ages_s"][k] is not None
        for k in ("manifest", "history", "last_checkpoint", "report")
    )
    assert status["problems"] == []

    text = cli("status", str(demo))
    assert text.exit_code == 0
    assert "status: completed" in text.output
    assert "checkpoint step-0000004: ok" in text.output
    assert "bits/byte" in text.output


def test_status_reports_corrupt_partial_and_temporary_checkpoints(cli, runs, tmp_path):
    run = tmp_path / "damaged"
    shutil.copytree(runs[0], run)
    ckpts = run / "01-p1" / "checkpoints"
    tensors = ckpts / "step-0000004" / "trainable.safetensors"
    with tensors.open("r+b") as fh:
        fh.truncate(tensors.stat().st_size // 2)
    partial = ckpts / "step-0000008"  # the final name but no state.json
    partial.mkdir()
    shutil.copy(ckpts / "step-0000004" / "rng.safetensors", partial)
    (ckpts / ".step-0000009-x1y2").mkdir()  # an interrupted save's temporary directory
    missing = run / "02-p2" / "checkpoints" / "step-0000002" / "optimizer.json"
    missing.unlink()

    [status] = _status_json(cli, run)
    by_name = {c["name"]: c for c in status["phases"][0]["checkpoints"]}
    assert by_name["step-0000004"]["valid"] is False
    assert "trainable.safetensors" in by_name["step-0000004"]["problem"]
    assert by_name["step-0000008"]["valid"] is False
    assert "partial" in by_name["step-0000008"]["problem"]
    assert by_name[".step-0000009-x1y2"]["valid"] is False
    [p2] = status["phases"][1]["checkpoints"]
    assert p2["valid"] is False and "optimizer.json" in p2["problem"]
    assert len(status["problems"]) == 4

    text = cli("status", str(run)).output
    assert "checkpoint step-0000004: corrupt" in text
    assert "problems (4)" in text


def test_status_tolerates_a_half_written_history_line(cli, runs, tmp_path):
    run = tmp_path / "appending"
    shutil.copytree(runs[0], run)
    with (run / "01-p1" / "history.jsonl").open("a") as fh:
        fh.write('{"step": 5, "kind": "train", "train_lo')
    [status] = _status_json(cli, run)
    assert status["phases"][0]["step"] == 4


def test_status_reads_a_manifest_replaced_while_it_reads(runs, tmp_path):
    run = tmp_path / "busy"
    shutil.copytree(runs[0], run)
    from wake2vec.rundir.directory import write_json_atomic

    manifest = json.loads((run / "manifest.json").read_text())
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            write_json_atomic(run / "manifest.json", manifest)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        names = {run_status(run)["name"] for _ in range(30)}
    finally:
        stop.set()
        thread.join()
    assert names == {"demo-three-phase"}


def test_status_of_a_non_run_directory_exits_2(cli, runs, tmp_path):
    result = cli("status", str(runs[0]), str(tmp_path))
    assert result.exit_code == 2
    assert str(tmp_path) in result.output
    assert "not a wake2vec run directory" in result.output
    missing = cli("compare", str(runs[0]), str(tmp_path / "nope"))
    assert missing.exit_code == 2
    assert str(tmp_path / "nope") in missing.output


def test_status_and_compare_do_not_import_torch(runs):
    code = (
        "import sys\n"
        "from wake2vec.cli import cli\n"
        f"for args in (['status', {str(runs[0])!r}], ['compare', {str(runs[0])!r}, "
        f"{str(runs[1])!r}, '--format', 'html']):\n"
        "    try:\n"
        "        cli.main(args=args, prog_name='wake2vec')\n"
        "    except SystemExit as exc:\n"
        "        assert not exc.code, exc.code\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("NO-TORCH")


def test_status_follows_a_run_in_another_process(cli, runs, tmp_path):
    run = tmp_path / "live"
    proc = _run(run, "--set", "phases[0].steps=5000", "--set", "phases[0].eval_every=1000")
    seen = None
    try:
        deadline = time.monotonic() + HANG_GUARD_S
        while time.monotonic() < deadline and proc.poll() is None:
            if (run / "manifest.json").is_file() or (run / "run.lock").is_file():
                [status] = _status_json(cli, run)
                current = status["current_phase"]
                if current and current["step"] > 0 and proc.poll() is None:
                    seen = status
                    break
            time.sleep(0.3)
    finally:
        proc.terminate()  # SIGTERM: the process dies without marking the manifest
        proc.wait(timeout=30)
    assert seen is not None, f"no live step seen; run exited with {proc.returncode}"
    assert seen["status"] == "running"
    assert seen["writer"]["alive"] is True and seen["writer"]["pid"] == proc.pid
    assert seen["current_phase"]["name"] == "p1"
    assert seen["current_phase"]["total_steps"] == 5000
    assert seen["current_phase"]["eta_s"] is None or seen["current_phase"]["eta_s"] > 0

    [after] = _status_json(cli, run)
    assert after["writer"]["alive"] is False
    assert after["status"] == "stopped"  # the manifest still says running; status knows better
    assert "stopped" in cli("status", str(run)).output


def test_watch_refreshes_until_interrupted(cli, runs, monkeypatch):
    calls = []

    def fake_sleep(seconds: float) -> None:
        calls.append(seconds)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", fake_sleep)
    result = cli("status", "--watch", "--interval", "0.5", str(runs[0]))
    assert result.exit_code == 0
    assert result.output.count("status: completed") == 2
    assert calls == [0.5, 0.5]


# ----------------------------------------------------------------------------- compare


def test_compare_flags_per_token_losses_across_different_tokenizers(cli, runs):
    result = cli("compare", "--format", "json", *map(str, runs))
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["same_tokenizer"] is False
    assert data["labels"] == ["demo-three-phase", "small-vocab"]
    rows = {(r["section"], r["label"]): r for r in data["rows"]}
    bpb = rows[("phase p1", "bits per byte")]
    assert bpb["comparable"] is True
    assert all(isinstance(v, float) and v > 0 for v in bpb["values"])
    val = rows[("phase p1", "val loss (nats/token)")]
    assert val["comparable"] is False and "tokenizers differ" in val["note"]
    assert rows[("model", "base tokenizer entries")]["values"] == [1000, 800]
    assert rows[("model", "tokenizer kind")]["values"] == ["SentencePiece-style BPE", "byte-level BPE"]
    for phase in ("p1", "p2", "p3"):
        assert all(v > 0 for v in rows[(f"phase {phase}", "bits per byte")]["values"])
    new_share = rows[("phase p3", "generated: new-token share")]
    assert new_share["comparable"] is False and all(0 <= v <= 1 for v in new_share["values"])
    assert rows[("phase p3", "generated: words unknown to English")]["comparable"] is True
    new_ids, share = (
        rows[("model", "new ids")]["values"],
        rows[("model", "new ids' share of the vocabulary")],
    )
    assert share["values"][1] == pytest.approx(new_ids[1] / (800 + new_ids[1]))
    assert rows[("injection", "coverage of lexicon occurrences")]["values"][0] is not None
    assert rows[("phase p1", "norm Cohen's d (new vs base)")]["values"][0] is not None

    table = cli("compare", *map(str, runs)).output
    assert "val loss (nats/token) (!)" in table
    assert "bits per byte (!)" not in table
    assert "tokenizers differ" in table


def test_compare_same_tokenizer_is_comparable(cli, runs, tmp_path):
    twin = tmp_path / "twin"
    shutil.copytree(runs[0], twin)
    data = json.loads(cli("compare", "--format", "json", str(runs[0]), str(twin)).output)
    assert data["same_tokenizer"] is True
    assert all(r["comparable"] for r in data["rows"])
    assert len(set(data["labels"])) == 2  # same run name: told apart by folder


def test_compare_markdown_and_html_escape_user_strings(cli, runs, tmp_path):
    evil = tmp_path / "evil"
    shutil.copytree(runs[1], evil)
    manifest = json.loads((evil / "manifest.json").read_text())
    manifest["recipe"]["run"]["name"] = "<script>alert('x')</script>|pipe"
    (evil / "manifest.json").write_text(json.dumps(manifest))

    out = tmp_path / "cmp.html"
    result = cli("compare", "--format", "html", "-o", str(out), str(runs[0]), str(evil))
    assert result.exit_code == 0
    html = out.read_text()
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert "<table>" in html and "bits per byte" in html

    md = cli("compare", "--format", "markdown", str(runs[0]), str(evil)).output
    lines = [line for line in md.splitlines() if line.startswith("|")]
    assert lines[1].startswith("|---|")
    cells = [len(re.findall(r"(?<!\\)\|", line)) for line in lines]  # unescaped pipes per line
    assert set(cells) == {4}  # three columns everywhere
    assert "<script>" not in md
    assert any("val loss (nats/token) (!)" in line for line in lines)
