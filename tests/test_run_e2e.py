"""The demo recipe end to end through ``wake2vec run``: a complete run directory, lifecycle
events, refusal to overwrite, --force and --resume."""

from __future__ import annotations

import json

import pytest
from conftest import RECIPES

pytestmark = pytest.mark.slow

FAST = ["--set", "phases[0].steps=12", "--set", "phases[0].eval_every=6",
        "--set", "phases[1].steps=8", "--set", "phases[2].steps=8"]


class Recorder:
    """A lifecycle observer plugin registered in-process."""

    def __init__(self):
        self.calls: list[tuple[str, dict]] = []

    def _record(self, name, **kwargs):
        self.calls.append((name, kwargs))

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


def _recorder_plugin(recorder: Recorder):
    from wake2vec import hookimpl

    class Plugin:
        @hookimpl
        def wake2vec_run_start(self, run):
            recorder._record("run_start", run=run)

        @hookimpl
        def wake2vec_run_end(self, run, status, error):
            recorder._record("run_end", status=status, error=error)

        @hookimpl
        def wake2vec_phase_start(self, run, phase):
            recorder._record("phase_start", phase=phase)

        @hookimpl
        def wake2vec_phase_end(self, run, phase, metrics):
            recorder._record("phase_end", metrics=metrics)

        @hookimpl
        def wake2vec_evaluation(self, run, phase, step, metrics):
            recorder._record("evaluation", step=step, metrics=metrics)

        @hookimpl
        def wake2vec_checkpoint_saved(self, run, phase, step, path):
            recorder._record("checkpoint_saved", step=step, path=path)

    return Plugin()


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One short demo run shared by the tests below."""
    from click.testing import CliRunner

    from wake2vec import plugins
    from wake2vec.cli import cli

    plugins.reset()
    recorder = Recorder()
    plugins.get_plugins().pm.register(_recorder_plugin(recorder), name="recorder")
    out = tmp_path_factory.mktemp("runs") / "demo"
    result = CliRunner().invoke(cli, ["run", str(RECIPES / "three_phase.toml"), "--output-dir", str(out),
                                      *FAST], catch_exceptions=False)
    plugins.reset()
    return out, result, recorder


def test_demo_run_completes_with_a_complete_run_directory(demo_run):
    out, result, _ = demo_run
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "completed"
    assert manifest["seed"] == 1234 and manifest["trust_remote_code"] is False
    assert manifest["recipe"]["phases"][0]["steps"] == 12
    assert {"torch", "transformers", "wake2vec"} <= set(manifest["packages"])
    assert set(manifest["data_files"]) >= {"demo_corpus.txt", "demo_lexicon.txt"}
    assert all(len(f["sha256"]) == 64 for f in manifest["data_files"].values())
    assert any(p["plugin"] == "wake2vec_plugins.phases.embed_only" for p in manifest["plugins"])
    assert manifest["phases"]["p1"]["status"] == "completed"
    for name in ("run.log", "events.jsonl", "injection.json", "report.html", "report.json",
                 "tokenizer/tokenizer_config.json", "01-p1/metrics.json", "01-p1/new_rows.safetensors",
                 "final/model/config.json"):
        assert (out / name).exists(), name
    injection = json.loads((out / "injection.json").read_text())
    assert injection["spurious_hits"]["count"] == 0 if isinstance(injection["spurious_hits"], dict) \
        else injection["spurious_hits"] == 0
    report = (out / "report.html").read_text()
    assert "random weights" in report


def test_lifecycle_hooks_fire_in_order(demo_run):
    out, result, recorder = demo_run
    names = recorder.names()
    assert names[0] == "run_start" and names[-1] == "run_end"
    assert names.index("phase_start") < names.index("evaluation") < names.index("phase_end")
    assert "checkpoint_saved" in names
    evaluations = [kw for name, kw in recorder.calls if name == "evaluation"]
    p1_evaluations = evaluations[:2]
    assert [e["step"] for e in p1_evaluations] == [6, 12]
    assert len([n for n in names if n == "phase_end"]) == 3
    for e in evaluations:
        assert {"val_loss", "perplexity", "bits_per_byte"} <= set(e["metrics"])
    assert recorder.calls[-1][1]["status"] == "completed"
    events = [json.loads(line)["event"] for line in (out / "events.jsonl").read_text().splitlines()]
    assert events[0] == "run_start" and events[-1] == "run_end" and "checkpoint_saved" in events


def test_existing_run_directory_is_not_overwritten(demo_run, cli):
    out, _, _ = demo_run
    before = (out / "manifest.json").read_text()
    result = cli("run", str(RECIPES / "three_phase.toml"), "--output-dir", str(out), *FAST)
    assert result.exit_code == 2
    assert "already exists; pass --resume to continue it or --force to replace it" in result.output
    assert (out / "manifest.json").read_text() == before


def test_resume_of_a_completed_run_skips_finished_phases(demo_run, cli, tmp_path):
    import shutil

    out, _, _ = demo_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    result = cli("run", str(RECIPES / "three_phase.toml"), "--output-dir", str(copy), "--resume", *FAST)
    assert result.exit_code == 0, result.output
    assert "already completed" in (copy / "run.log").read_text()
    manifest = json.loads((copy / "manifest.json").read_text())
    assert len(manifest["sessions"]) == 2 and manifest["status"] == "completed"


def test_force_replaces_the_run(demo_run, cli, tmp_path):
    import shutil

    out, _, _ = demo_run
    copy = tmp_path / "forced"
    shutil.copytree(out, copy)
    (copy / "stale.txt").write_text("old")
    result = cli("run", str(RECIPES / "three_phase.toml"), "--output-dir", str(copy), "--force", *FAST)
    assert result.exit_code == 0, result.output
    assert not (copy / "stale.txt").exists()


def test_unwritable_output_directory_is_a_clear_error(cli, tmp_path):
    import os

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = cli("run", str(RECIPES / "three_phase.toml"), "--output-dir", str(blocker / "run"), *FAST)
    assert result.exit_code == 2 and f"cannot write the run directory {blocker / 'run'}" in result.output
    if os.geteuid() != 0:  # permission bits do not stop root
        locked = tmp_path / "ro"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            result = cli("run", str(RECIPES / "three_phase.toml"), "--output-dir", str(locked / "run"), *FAST)
        finally:
            locked.chmod(0o700)
        assert result.exit_code == 2 and "cannot write the run directory" in result.output


def test_final_artefacts_load_with_plain_transformers_and_peft(demo_run):
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, _, _ = demo_run
    tokenizer = AutoTokenizer.from_pretrained(out / "final" / "model")
    model = AutoModelForCausalLM.from_pretrained(out / "final" / "model")
    words = (RECIPES.parent / "data" / "demo_lexicon.txt").read_text(encoding="utf-8").split()[:3]
    text = "riverrun, past " + " ".join(words)
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert max(ids) >= 1000  # lexicon words encode to new ids beyond the demo's 1,000 base entries
    generated = model.generate(**tokenizer(text, return_tensors="pt"), max_new_tokens=5, do_sample=False)
    assert generated.shape[1] == len(ids) + 5
    rows = load_file(str(out / "03-p3" / "new_rows.safetensors"))
    final = model.get_input_embeddings().weight
    assert torch.equal(final[rows["ids"]], rows["input"])
    base = AutoModelForCausalLM.from_pretrained(out / "final" / "model")
    adapted = PeftModel.from_pretrained(base, out / "02-p2" / "adapter")
    assert any("lora_A" in name for name, _ in adapted.named_parameters())


def test_alignment_phase_without_morphemes_fails_before_loading_a_model(cli, tmp_path, monkeypatch):
    import wake2vec_plugins.models.demo as demo

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(demo.DemoFamily, "load", refuse)
    recipe = tmp_path / "r.toml"
    recipe.write_text((RECIPES / "three_phase.toml").read_text().replace(
        'morphemes = "../data/demo_morphemes.csv"\n', "").replace("../data/", f"{RECIPES.parent}/data/"))
    result = cli("run", str(recipe), "--output-dir", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "phase 'p3' uses regularizers that need morpheme data; set data.morphemes" in result.output


def test_full_demo_training_loss_falls_in_every_phase(cli, tmp_path):
    out = tmp_path / "full"
    result = cli("run", str(RECIPES / "three_phase.toml"), "--output-dir", str(out))
    assert result.exit_code == 0, result.output
    for phase in ("01-p1", "02-p2", "03-p3"):
        rows = [json.loads(line) for line in (out / phase / "history.jsonl").read_text().splitlines()]
        losses = [r["train_loss"] for r in rows if r["kind"] == "train"]
        quarter = max(len(losses) // 4, 5)
        first, last = sum(losses[:quarter]) / quarter, sum(losses[-quarter:]) / quarter
        assert last < first, (phase, first, last)


def test_nf4_body_runs_all_phases_with_fp32_rows(cli, tmp_path):
    pytest.importorskip("bitsandbytes")
    import torch
    from safetensors.torch import load_file

    out = tmp_path / "nf4"
    result = cli("run", str(RECIPES / "three_phase.toml"), "--output-dir", str(out),
                 "--set", 'model.quantization="nf4"', *FAST)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "final" / "model" / "config.json").read_text())
    assert config["quantization_config"]["bnb_4bit_quant_type"] == "nf4"
    checkpoint = sorted((out / "01-p1" / "checkpoints").glob("step-*"))[-1]
    rows = load_file(str(checkpoint / "trainable.safetensors"))
    assert rows["input"].dtype == rows["output"].dtype == torch.float32
    norms = json.loads((out / "02-p2" / "adapter_norms.json").read_text())
    assert norms and max(norms.values()) > 0  # the adapters on the 4-bit body learned
