"""Baselines and the control arm: the untouched model, step 0, and a sibling run on the base
tokenizer, all measured on the same validation bytes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import RECIPES

SHORT = ("--set", "phases[0].steps=6", "--set", "phases[0].eval_every=0",
         "--set", "phases[1].steps=3", "--set", "phases[1].warmup_steps=0",
         "--set", "phases[1].eval_every=0", "--set", "phases[2].steps=3",
         "--set", "phases[2].warmup_steps=0", "--set", "phases[2].eval_every=0",
         "--set", "analysis.generation.enabled=false")


def _manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text(encoding="utf-8"))


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


@pytest.fixture(scope="module")
def treated(tmp_path_factory):
    """The demo recipe, shortened, with run.control = true."""
    from click.testing import CliRunner

    from wake2vec.cli import cli

    run = tmp_path_factory.mktemp("control") / "demo"
    result = CliRunner().invoke(
        cli, ["run", str(RECIPES / "three_phase.toml"), "--output-dir", str(run),
              "--set", "run.control=true", *SHORT], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return run


def test_an_injection_that_adds_no_word_starts_where_the_untouched_model_stands(tmp_path, cli):
    """Step 0 of a run that injects nothing is the untouched model on the same bytes, so the two
    baselines of every run are measured the same way."""
    run = tmp_path / "plain"
    result = cli("run", str(RECIPES / "three_phase.toml"), "--output-dir", str(run),
                 "--set", "injection.injector={name = \"none\"}", "--set", "phases=[{strategy = \"lora\", "
                 "steps = 1, learning_rate = 1e-3, batch_size = 8}]",
                 "--set", "analysis.generation.enabled=false")
    assert result.exit_code == 0, result.output
    manifest = _manifest(run)
    base, step0 = manifest["baselines"]["base"], manifest["baselines"]["injected"]
    assert manifest["injection"]["new_ids"] == 0
    assert step0["val_bytes"] == base["val_bytes"] > 0
    assert step0["val_tokens"] == base["val_tokens"]
    assert abs(step0["bits_per_byte"] - base["bits_per_byte"]) < 1e-6
    assert abs(step0["val_loss"] - base["val_loss"]) < 1e-6


def test_baselines_and_phases_share_the_validation_bytes(treated):
    manifest = _manifest(treated)
    baselines = manifest["baselines"]
    n_bytes = {baselines["base"]["val_bytes"], baselines["injected"]["val_bytes"]}
    n_bytes |= {p["evaluation"]["val_bytes"] for p in manifest["phases"].values()}
    assert len(n_bytes) == 1
    # the new words make the same text fewer tokens
    assert baselines["injected"]["val_tokens"] < baselines["base"]["val_tokens"]


def test_the_control_runs_beside_the_treatment_without_injection(treated):
    control = treated.with_name(treated.name + "-control")
    theirs = _manifest(control)
    assert theirs["status"] == "completed"
    assert list(theirs["phases"]) == ["p2"]  # P1 and P3 train only new rows
    assert theirs["injection"]["new_ids"] == 0
    assert theirs["recipe"]["injection"]["injector"]["name"] == "none"
    ours = _manifest(treated)
    p2 = ours["recipe"]["phases"][1]
    assert theirs["recipe"]["phases"][0] == p2  # same steps, seed-independent settings
    assert theirs["recipe"]["run"]["seed"] == ours["recipe"]["run"]["seed"]
    # the untouched model is one model on one text, in both runs
    assert theirs["baselines"]["base"] == ours["baselines"]["base"]
    assert theirs["baselines"]["injected"]["bits_per_byte"] == pytest.approx(
        theirs["baselines"]["base"]["bits_per_byte"], abs=1e-6)
    assert theirs["phases"]["p2"]["evaluation"]["val_bytes"] == \
        ours["phases"]["p2"]["evaluation"]["val_bytes"]
    recorded = ours["control"]
    assert recorded["status"] == "completed" and Path(recorded["run_dir"]) == control
    assert recorded["phases"]["p2"] == theirs["phases"]["p2"]["evaluation"]


def test_the_report_sets_treatment_and_control_side_by_side(treated):
    ours = _manifest(treated)
    text = _text((treated / "report.html").read_text(encoding="utf-8"))
    assert "Treatment and control" in text
    mine = ours["phases"]["p2"]["evaluation"]["bits_per_byte"]
    theirs = ours["control"]["phases"]["p2"]["bits_per_byte"]
    assert f"p2 {mine:.3f} {theirs:.3f} {mine - theirs:+.3f}" in text
    assert "not in the control" in text  # p1 and p3


def test_compare_brings_the_control_beside_its_run(treated, cli):
    result = cli("compare", str(treated), "--format", "json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    names = json.dumps(found)
    assert treated.name + "-control" in names


def test_a_control_with_nothing_to_train_is_refused_before_anything_is_written(tmp_path, cli):
    run = tmp_path / "p1only"
    result = cli("run", str(RECIPES / "three_phase.toml"), "--output-dir", str(run),
                 "--set", "run.control=true",
                 "--set", "phases=[{strategy = \"embed-only\", steps = 1, learning_rate = 1e-3}]")
    assert result.exit_code == 2
    assert "run.control: every phase (p1) trains only the new rows" in result.output
    assert not run.exists()


def test_each_phase_records_its_peak_memory(treated, cli):
    import sys

    manifest = _manifest(treated)
    assert manifest["peak_memory"]["prepare"]["rss_mib"] > 0
    for name, record in manifest["phases"].items():
        for part in ("training", "analysis"):
            peak = record["peak_memory"][part]
            assert peak["rss_mib"] > 50, (name, part, peak)
            if sys.platform.startswith("linux"):  # sampled for each stretch
                assert peak["scope"] == "sampled"
                assert peak["rss_mib"] <= peak["process_peak_mib"] + 1
    text = _text((treated / "report.html").read_text(encoding="utf-8"))
    assert "peak memory: training / analysis" in text
    p1 = manifest["phases"]["p1"]["peak_memory"]["training"]["rss_mib"]
    assert f"{p1:,.0f} MiB RSS" in text
    shown = cli("status", str(treated))
    assert shown.exit_code == 0 and f"peak memory: training {p1:,.0f} MiB RSS" in shown.output


def test_a_peak_is_measured_from_its_own_start():
    import sys

    import numpy as np

    from wake2vec.training.memory import PeakMemory

    if not sys.platform.startswith("linux"):
        pytest.skip("the resident set is sampled from Linux's /proc/self/statm")
    watch = PeakMemory().start()
    block = np.ones(400 * 1024 * 1024 // 8)  # 400 MiB, touched
    high = watch.read()["rss_mib"]
    del block
    assert watch.read()["rss_mib"] >= high  # the block is gone, its peak is not
    watch.stop()
    later = PeakMemory().start()
    low = later.read()
    later.stop()
    assert high - low["rss_mib"] > 300
    assert low["process_peak_mib"] >= high - 1  # the kernel's own peak is left alone
