"""Generation probes: the measures on known texts, seeded sampling that leaves training's random
state alone, probes in a real run, and ``wake2vec analyze`` reproducing a run's measurements."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import HANG_GUARD_S, built_once
from helpers_training import NEW_WORDS, corpus_text, inject, tiny_model, train_tokenizer

from wake2vec.analysis.generation import MEASURES, mean_measures, measure, probe, words_of
from wake2vec.recipe.schema import GenerationSpec

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "three_phase.toml"
SHORT = (
    "--set", "phases[0].steps=3", "--set", "phases[1].steps=2", "--set", "phases[2].steps=2",
    *(x for i in range(3) for x in ("--set", f"phases[{i}].warmup_steps=0")),
    "--set", "analysis.generation.temperatures=[0.7, 1.2]",
    "--set", "analysis.generation.max_new_tokens=12",
)

# ----------------------------------------------------------------------------- measures


def test_words_keep_inner_apostrophes_and_hyphens_and_fold_case():
    assert words_of("Riverrun, past Eve and Adam’s, from swerve-of-shore -- 1132!") == [
        "riverrun", "past", "eve", "and", "adam's", "from", "swerve-of-shore", "1132"]


def test_measures_of_a_known_continuation():
    text = "the riverrun the riverrun the riverrun bababadalgharagh"
    ids = [5, 900, 5, 900, 5, 900, 7]
    m = measure(text, ids, new_ids={900}, lexicon={"riverrun", "bababadalgharagh", "commodius"})
    assert m["new_token_share"] == pytest.approx(3 / 7)
    assert m["lexicon_share"] == pytest.approx(4 / 7)
    assert m["lexicon_recall"] == pytest.approx(2 / 3)
    assert m["distinct_1"] == pytest.approx(3 / 7)
    assert m["distinct_2"] == pytest.approx(3 / 6)  # the/riverrun, riverrun/the, riverrun/baba...
    # trigrams: (the riv the) (riv the riv) (the riv the)* (riv the riv)* (the riv baba)
    assert m["repetition_rate"] == pytest.approx(2 / 5)
    # wordfreq knows "the" and even "riverrun" (Zipf 2.1); it has no entry for the thunderword
    assert m["unknown_word_share"] == pytest.approx(1 / 7)


def test_measures_with_nothing_to_count_are_none_and_left_out_of_means():
    empty = measure("", [], new_ids={1}, lexicon={"a"})
    assert all(v is None for v in empty.values())
    short = measure("riverrun", [3], new_ids={3}, lexicon={"riverrun"})
    assert short["repetition_rate"] is None and short["distinct_2"] is None
    assert short["new_token_share"] == 1.0
    means = mean_measures([{"measures": empty}, {"measures": short}])
    assert means["new_token_share"] == 1.0 and means["repetition_rate"] is None
    assert set(means) == set(MEASURES)


def test_bad_generation_settings_are_recipe_errors(cli):
    for setting, message in [
        ("analysis.generation.temperatures=[0.0]", "temperature 0.0 is outside (0, 10]"),
        ("analysis.generation.prompts=['  ']", "prompt 0 is empty"),
        ("analysis.generation.max_new_tokens=0", "greater than or equal to 1"),
        ("analysis.generation.tempratures=[1.0]", "did you mean 'temperatures'"),
    ]:
        result = cli("validate", str(RECIPE), "--set", setting)
        assert result.exit_code == 2, (setting, result.output)
        assert message in result.output, (setting, result.output)


# ----------------------------------------------------------------------------- sampling


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tokenizer = train_tokenizer(corpus_text(), vocab_size=300)
    model = tiny_model(len(tokenizer), tied=False)
    new_ids = inject(model, tokenizer)
    return model, tokenizer, new_ids


def test_probe_is_seeded_complete_and_leaves_the_random_state_alone(tiny):
    model, tokenizer, new_ids = tiny
    spec = GenerationSpec(prompts=["riverrun, past", "Howth Castle"], temperatures=[0.5, 1.5],
                          max_new_tokens=8, samples_per_setting=2)
    model.train()
    torch.manual_seed(99)
    expected_next = torch.rand(3)
    torch.manual_seed(99)
    first = probe(model, tokenizer, spec, new_ids=new_ids, lexicon=["riverrun", "Howth"], seed=7)
    assert torch.equal(torch.rand(3), expected_next), "probing moved the caller's random state"
    assert model.training, "probing left the model in eval mode"
    second = probe(model, tokenizer, spec, new_ids=new_ids, lexicon=["riverrun", "Howth"], seed=7)
    assert first == second
    other = probe(model, tokenizer, spec, new_ids=new_ids, lexicon=["riverrun"], seed=8)
    assert [s["text"] for s in other["samples"]] != [s["text"] for s in first["samples"]]

    samples = first["samples"]
    assert len(samples) == 2 * 2 * 2
    assert {(s["prompt"], s["temperature"], s["sample"]) for s in samples} == {
        (p, t, k) for p in spec.prompts for t in (0.5, 1.5) for k in (0, 1)}
    assert len({s["seed"] for s in samples}) == len(samples)
    assert all(0 < s["tokens"] <= 8 for s in samples)
    assert set(first["by_temperature"]) == {"0.5", "1.5"}
    assert first["settings"]["temperatures"] == [0.5, 1.5] and first["settings"]["seed"] == 7
    json.dumps(first, allow_nan=False)  # strict JSON


class _Scripted(torch.nn.Module):
    """Generates a fixed continuation, to check what probe counts."""

    def __init__(self, continuation: list[int]):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.continuation = continuation

    def generate(self, input_ids, **kwargs):
        tail = torch.tensor([self.continuation], dtype=input_ids.dtype)
        return torch.cat([input_ids, tail], dim=1)


def test_probe_counts_the_new_ids_of_the_continuation_only(tiny):
    _, tokenizer, new_ids = tiny
    prompt_ids = tokenizer("riverrun")["input_ids"]
    base_id = next(i for i in range(10, 300) if i not in prompt_ids)
    model = _Scripted([new_ids[0], base_id, new_ids[1], new_ids[0]])
    spec = GenerationSpec(prompts=["riverrun"], temperatures=[1.0], max_new_tokens=4)
    sample = probe(model, tokenizer, spec, new_ids=new_ids, lexicon=NEW_WORDS, seed=0)["samples"][0]
    assert sample["tokens"] == 4
    assert sample["measures"]["new_token_share"] == pytest.approx(3 / 4)
    assert sample["text"] == tokenizer.decode(model.continuation, skip_special_tokens=True)


# ----------------------------------------------------------------------------- in a run


def _run(out: Path, *extra: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "wake2vec", "run", str(RECIPE), "--output-dir", str(out), *SHORT, *extra],
        capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs, built once per test session (the xdist workers share them; tests copy a run
    before they change it)."""

    def build(root: Path) -> None:
        _run(root / "probed")
        _run(root / "unprobed", "--set", "analysis.generation.enabled=false")

    root = built_once(tmp_path_factory, "gen-runs", build)
    return root / "probed", root / "unprobed"


def _metrics(run: Path, phase: str) -> dict:
    return json.loads(next(run.glob(f"??-{phase}/metrics.json")).read_text(encoding="utf-8"))


@pytest.mark.slow
def test_every_phase_records_probes_and_probing_does_not_change_training(runs):
    probed, unprobed = runs
    for phase in ("p1", "p2", "p3"):
        generation = _metrics(probed, phase)["generation"]
        assert generation["settings"]["temperatures"] == [0.7, 1.2]
        assert generation["settings"]["prompts"] == ["riverrun, past Eve and Adam's,"]
        assert len(generation["samples"]) == 2
        assert "generation" not in _metrics(unprobed, phase)
        a = (probed / next(probed.glob(f"??-{phase}")).name / "new_rows.safetensors").read_bytes()
        b = (unprobed / next(unprobed.glob(f"??-{phase}")).name / "new_rows.safetensors").read_bytes()
        assert a == b, f"probing changed what {phase} trained"
    assert (probed / "injected_rows.safetensors").is_file()


@pytest.mark.slow
def test_analyze_reproduces_the_run_s_measurements(cli, runs, tmp_path):
    probed, _ = runs
    copy = tmp_path / "copy"
    shutil.copytree(probed, copy)
    for folder in copy.glob("??-p*"):  # lose the recorded analysis: analyze must rebuild it
        record = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        record["analysis"] = {}
        (folder / "metrics.json").write_text(json.dumps(record), encoding="utf-8")
    (copy / "report.html").unlink()
    result = cli("analyze", str(copy))
    assert result.exit_code == 0, result.output
    assert (copy / "report.html").is_file()
    for phase in ("p1", "p2", "p3"):
        again, original = _metrics(copy, phase), _metrics(probed, phase)
        assert again["analysis"] == original["analysis"], phase
        assert again["evaluation"] == original["evaluation"]
    # probes on the final model are the last phase's probes, sample for sample
    assert _metrics(copy, "p3")["generation"] == _metrics(probed, "p3")["generation"]
    manifest = json.loads((copy / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["analyses"][-1]["generation"] is True


@pytest.mark.slow
def test_analyze_a_chosen_metric_only(cli, runs, tmp_path):
    probed, _ = runs
    copy = tmp_path / "copy"
    shutil.copytree(probed, copy)
    result = cli("analyze", str(copy), "--metric", "drift", "--no-generation")
    assert result.exit_code == 0, result.output
    analysis = _metrics(copy, "p1")["analysis"]
    assert list(analysis) == ["drift"]
    assert analysis["drift"]["base"]["mean"] == 1.0


def test_analyze_refuses_what_is_not_a_finished_run(cli, tmp_path):
    result = cli("analyze", str(tmp_path))
    assert result.exit_code == 2
    assert "is not a wake2vec run directory" in result.output
    (tmp_path / "manifest.json").write_text(json.dumps({"status": "running", "recipe": {}}))
    result = cli("analyze", str(tmp_path))
    assert result.exit_code == 2
    assert "status 'running'; analyze needs a finished run" in result.output


@pytest.mark.slow
def test_analyze_an_unknown_metric_fails_before_loading(cli, runs, tmp_path):
    probed, _ = runs
    copy = tmp_path / "copy"
    shutil.copytree(probed, copy)
    result = cli("analyze", str(copy), "--metric", "isotrpy")
    assert result.exit_code == 2
    assert "isotrpy" in result.output and "isotropy" in result.output


@pytest.mark.slow
def test_metrics_json_holds_every_documented_path(runs):
    """docs/metrics.md lists the paths readers may rely on; a real run must have each one."""
    doc = (REPO / "docs" / "metrics.md").read_text(encoding="utf-8")
    block = doc.split("```text\n", 1)[1].split("```", 1)[0]
    paths = [line.strip() for line in block.splitlines() if line.strip()]
    assert len(paths) > 40
    probed, _ = runs
    for phase in ("p1", "p2", "p3"):
        record = _metrics(probed, phase)
        assert record["schema_version"] == 1
        for path in paths:
            node = record
            for key in path.split("."):
                assert isinstance(node, dict) and key in node, f"{phase}: {path} missing at {key!r}"
                node = node[key]
        json.dumps(record, allow_nan=False)
