"""Smoke test of benchmarks/: every benchmark runs at its tiny ``--quick`` size through the one
command, reports its rows, and the quick numbers meet their correctness targets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HANG_GUARD_S, built_once

pytestmark = pytest.mark.bench

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "benchmarks" / "run.py"
LEXICON = REPO.parent / "shared" / "data" / "wake_lexicon.txt"


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory) -> dict:
    """Every benchmark at ``--quick`` size, run once per test session (the xdist workers share
    it). Its timings are printed, never asserted: CI runs it beside the other marked suites,
    and the README's figures come from full-size runs on an idle machine."""

    def build(folder: Path) -> None:
        proc = subprocess.run(
            [sys.executable, str(RUN), "--quick", "--json", str(folder / "results.json")],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=HANG_GUARD_S,  # the quick P1 run starts five Python processes
        )
        (folder / "stdout.txt").write_text(proc.stdout, encoding="utf-8")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    folder = built_once(tmp_path_factory, "bench-quick", build)
    stdout = (folder / "stdout.txt").read_text(encoding="utf-8")
    assert "targets met:" in stdout
    return {"stdout": stdout, **json.loads((folder / "results.json").read_text(encoding="utf-8"))}


def _rows(results: dict, benchmark: str) -> dict[str, dict]:
    return {row["measure"]: row for row in results["rows"] if row["benchmark"] == benchmark}


def test_every_benchmark_ran_in_its_own_process_and_reported(quick_results):
    assert {"cli", "injection", "initializers", "analysis"} <= set(quick_results["benchmarks"])
    for name, result in quick_results["benchmarks"].items():
        assert result["status"] in ("ok", "skipped"), (name, result["status"])
        assert result["peak_rss_mib"] > 10, name  # a Python process, measured per child
        if result["status"] == "ok":
            assert _rows(quick_results, name), name
    machine = quick_results["machine"]
    assert machine["cpu_count"] >= 1 and machine["torch_version"]
    # the printed table names each measure
    assert "wake2vec --help (median)" in quick_results["stdout"]


def test_injection_quick_run_has_no_spurious_hits_and_round_trips(quick_results):
    if not LEXICON.is_file():
        assert quick_results["benchmarks"]["injection"]["status"] == "skipped"
        pytest.skip(f"shared lexicon absent: {LEXICON}")
    rows = _rows(quick_results, "injection")
    for kind in ("qwen3", "llama2"):  # the whole `wake2vec inject` on real tokenizer files
        assert rows[f"{kind}: spurious hits"]["value"] == 0
        assert rows[f"{kind}: round trip exact"]["value"] is True
        assert rows[f"{kind}: coverage"]["value"] == 1.0
        assert rows[f"{kind}: dead words"]["value"] == 0
        words, ids, trainable = map(int, rows[f"{kind}: words / new ids / trainable rows"]
                                    ["value"].split(" / "))
        assert ids == 2 * words and trainable == words > 0
        assert rows[f"{kind}: whole command"]["value"] > 0


def test_initializer_rows_spread_and_transformers_mean_resizing_does_not(quick_results):
    rows = _rows(quick_results, "initializers")
    assert {"spherical", "mean", "compositional", "subword-mean"} <= {m.split(":")[0] for m in rows}
    ours = rows["max pairwise distance: wake2vec mean (covariance)"]["value"]
    theirs = rows["max pairwise distance: transformers mean_resizing"]["value"]
    base = rows["max pairwise distance: base rows"]["value"]
    assert ours > 0.5 * base  # samples spread like the base rows
    assert theirs < 1e-3 * base  # transformers' rows all sit on the mean


def test_only_selects_benchmarks(tmp_path):
    out = tmp_path / "cli.json"
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--only", "cli", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert list(json.loads(out.read_text(encoding="utf-8"))["benchmarks"]) == ["cli"]


def test_analysis_quick_run_states_its_samples_and_sees_untouched_base_rows(quick_results):
    rows = _rows(quick_results, "analysis")
    names = ("norms", "isotropy", "drift", "neighbours", "pca-dims", "pairwise-cosine", "pip-loss")
    assert all(rows[name]["value"] >= 0 for name in names)  # every metric ran and was timed
    assert rows["every sample's size and seed stated in the output"]["value"] is True
    assert rows["drift of base rows (mean, min)"]["value"] == "1.0 / 1.0"
    assert rows["PIP loss of base rows"]["value"] == 0
    assert 0.0 < rows["neighbour overlap before/after"]["value"] < 1.0  # new rows moved


def test_p1_quick_run_agrees_with_the_study_style_baseline(quick_results):
    assert quick_results["benchmarks"]["p1"]["status"] == "ok"
    rows = _rows(quick_results, "p1")
    for variant in ("wake2vec-fp32", "wake2vec-bf16"):
        # same model, data, steps and seed: the losses agree, and every rerun is identical
        assert rows[f"throughput: {variant} validation loss vs study (relative)"]["met"] is True
        assert rows[f"throughput: {variant} same losses in every round"]["value"] is True
        assert rows[f"throughput: {variant} tokens/s (median step)"]["value"] > 0
    assert rows["efficiency: matrix FLOPs per P1 step"]["value"] > 0
    assert rows["memory: wake2vec-bf16 peak RSS"]["value"] > 10


def test_p2_quick_run_times_both_sides_on_the_same_model(quick_results):
    assert quick_results["benchmarks"]["p2"]["status"] == "ok"
    rows = _rows(quick_results, "p2")
    for side in ("peft-trainer", "wake2vec"):
        assert rows[f"{side}: tokens/s (median step)"]["value"] > 0
        first, last = (float(x) for x in rows[f"{side}: train loss at the first / last step"]["value"].split(" / "))
        assert 0 < first < 20 and 0 < last < 20  # a language-model loss near ln(vocabulary), not nan
    assert rows["wake2vec / plain peft + Trainer tokens/s"]["target"] == ">= 0.95x"


def test_scaling_quick_run_grows_with_the_vocabulary(quick_results):
    rows = _rows(quick_results, "scaling")
    flops = {m.split(":")[0]: r["value"] for m, r in rows.items() if m.endswith("matrix FLOPs per step")}
    assert len(flops) >= 2
    small, large = sorted(flops.values())[0], sorted(flops.values())[-1]
    assert large > small > 0
    assert all(r["value"] > 0 for m, r in rows.items() if m.endswith(": step"))


def test_real_model_quick_run_shows_baselines_and_phases(quick_results):
    assert quick_results["benchmarks"]["real-model"]["status"] == "ok"
    rows = _rows(quick_results, "real-model")
    assert 1.0 < rows["bits per byte: untouched model"]["value"] < 5.0
    assert rows["bits per byte: injected, step 0"]["value"] > 0
    for phase in ("p1", "p2", "p3"):
        mine, theirs = rows[f"bits per byte after {phase} (control)"]["value"].split(" (")
        assert float(mine) > 0
        assert theirs == "-)"  # the quick run leaves the control out
        training, analysis = rows[f"{phase} peak RSS training / analysis"]["value"].split(" / ")
        assert float(training) > 100 and float(analysis) > 100
    assert rows["laptop recipe: peak RSS"]["value"] > 100
