"""Every studied family's tiny stand-in, on the studied model's own tokenizer files and row
count, end to end through ``wake2vec run``: inject -> P1 (embed-only) -> P2 (LoRA on the
family's own projections) -> P3 (morpheme alignment with regularisers) -> analysis, with the
family detected from config.json or picked by ``model.preset``, one trainable row per word, and
a final model that plain transformers (``AutoModelForCausalLM``, ``AutoTokenizer``) loads with
the new words in its vocabulary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import DATA
from helpers_families import REAL_STAND_INS, build_real_stand_in

pytestmark = pytest.mark.slow

# made-up Wake-ish words: two share the prefix "re", two "un" (morpheme groups for P3)
WORDS = ("rewakeful", "rebrightening", "unriverly", "unshemmish", "dischanting", "fallgrovehood")

BASE_TEXTS = (
    "riverrun, past Eve and Adam's, from the shore to the bay,",
    "the old river ran past the hill and the tower by the bridge.",
    "the quick brown fox jumps over the lazy dog; vexing jazz waltz.",
    "générations of hens sang in the garden; the bell rang again.",
)

LORA_TARGETS = {
    "llama": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    "mistral": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    "qwen2": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    "gemma2": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    "phi3": {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"},  # fused, as in Phi-3.5
    "gpt2": {"c_attn", "c_proj", "c_fc"},  # Conv1D
}

# these name a studied model's preset (which sets the family) and load the local stand-in
# instead of the preset's hub id; the others are detected from config.json's model_type
PRESET_FOR = {"gpt2": "distilgpt2", "qwen2": "qwen2.5-14b"}

PHASE = """
steps = 2
learning_rate = {lr}
batch_size = 2
eval_batches = 1
"""

RECIPE = """\
[run]
name = "{family}-stand-in"
seed = 11

[model]
name = "{model}"
{preset}

[data]
corpus = "corpus.txt"
lexicon = "lexicon.txt"
morphemes = "{morphemes}"
seq_len = 16
validation_fraction = 0.2

[[phases]]
name = "p1"
strategy = "embed-only"
{p1}
[[phases]]
name = "p2"
strategy = "lora"
params = {{ r = 2, alpha = 4, dropout = 0.0 }}
{p2}
[[phases]]
name = "p3"
strategy = "morpheme-alignment"
regularizers = [{{ name = "morpheme", weight = 0.1 }}, {{ name = "norm", weight = 0.01 }}]
{p3}
[analysis]
metrics = ["norms", "drift"]
generation = {{ temperatures = [1.0], max_new_tokens = 3 }}

[report]
html = false
"""


def write_study(directory: Path, family: str, model: Path) -> Path:
    """A corpus where every lexicon word occurs several times, after a space and bare (at a
    line start, after a parenthesis), the lexicon and the recipe."""
    lines = [
        f"{BASE_TEXTS[i % len(BASE_TEXTS)]} the {WORDS[i % 6]} hill and ({WORDS[(5 * i + 1) % 6]})"
        for i in range(24)
    ] + [f"{word}, said the river." for word in WORDS]
    (directory / "corpus.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (directory / "lexicon.txt").write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    preset = f'preset = "{PRESET_FOR[family]}"' if family in PRESET_FOR else ""
    recipe = directory / "recipe.toml"
    recipe.write_text(
        RECIPE.format(
            family=family,
            model=model.as_posix(),
            preset=preset,
            morphemes=(DATA / "demo_morphemes.csv").as_posix(),
            p1=PHASE.format(lr=1e-2),
            p2=PHASE.format(lr=1e-3),
            p3=PHASE.format(lr=1e-3),
        ),
        encoding="utf-8",
    )
    return recipe


@pytest.mark.parametrize("key", list(REAL_STAND_INS))
def test_family_stand_in_runs_every_phase(key, tmp_path, cli, real_tokenizer):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

    family, tokenizer_name, tied, rows = REAL_STAND_INS[key]
    model_dir = build_real_stand_in(tmp_path / "model", key, real_tokenizer(tokenizer_name))
    recipe = write_study(tmp_path, family, model_dir)
    out = tmp_path / "run"
    result = cli("run", str(recipe), "--output-dir", str(out))
    assert result.exit_code == 0, result.output

    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["status"] == "completed"
    assert manifest["model"]["family"] == family
    assert manifest["model"]["tied"] is tied
    # two ids per word (after a space, bare), one trainable row per word
    assert manifest["injection"]["words"] == len(WORDS)
    assert manifest["injection"]["new_ids"] == 2 * len(WORDS)
    assert manifest["injection"]["trainable_rows"] == len(WORDS)
    injection = json.loads((out / "injection.json").read_text(encoding="utf-8"))
    assert injection["coverage"] == 1.0 and injection["spurious_hits"]["count"] == 0
    assert injection["round_trip"]["exact"] and injection["dead_tokens"]["words"] == 0
    notes = manifest["model"]["notes"]
    if family in PRESET_FOR and key == family:
        preset = PRESET_FOR[family]
        assert manifest["recipe"]["model"]["preset"] == preset
        assert any(note.startswith(f"preset {preset}: loading {model_dir}") for note in notes)
    for phase in ("01-p1", "02-p2", "03-p3"):
        metrics = json.loads((out / phase / "metrics.json").read_text(encoding="utf-8"))
        assert metrics["evaluation"]["steps"] == 2, phase

    # P1 trains the new rows only: every base row is exactly where it was
    p1 = json.loads((out / "01-p1" / "metrics.json").read_text(encoding="utf-8"))
    drift = p1["analysis"]["drift"]
    assert drift["base"]["mean"] == drift["base"]["min"] == 1.0
    assert drift["base"]["changed_rows"] == 0 and drift["base"]["max_abs_change"] == 0.0
    assert drift["new"]["rows"] == len(WORDS) and drift["new"]["changed_rows"] > 0

    # P2's adapters sit on this family's projections (fused ones for Phi-3, Conv1D for GPT-2)
    adapter = json.loads((out / "02-p2" / "adapter" / "adapter_config.json").read_text())
    assert set(adapter["target_modules"]) == LORA_TARGETS[family]

    # P3 applied its regularisers
    p3 = json.loads((out / "03-p3" / "metrics.json").read_text(encoding="utf-8"))
    assert {"reg_morpheme_mean", "reg_norm_mean"} <= set(p3["evaluation"])

    # the final model loads with plain transformers; its tokenizer encodes the new words
    final = out / "final" / "model"
    model = AutoModelForCausalLM.from_pretrained(final)
    base_entries = manifest["model"]["tokenizer_entries"]
    # new ids fill padding rows first; the matrix grows only past them
    grown = max(rows, base_entries + 2 * len(WORDS))
    assert model.get_input_embeddings().weight.shape[0] == manifest["model"]["rows"] == grown
    text = f"the {WORDS[0]} hill and ({WORDS[2]}) river"
    for loader in (AutoTokenizer, PreTrainedTokenizerFast):
        tokenizer = loader.from_pretrained(final)
        assert len(tokenizer) == base_entries + 2 * len(WORDS), loader.__name__
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        new = [i for i in ids if i >= base_entries]
        # the first word after a space is the first new id; the third word is bare
        assert len(new) == 2 and new[0] == base_entries, loader.__name__
        assert tokenizer.decode(ids) == text, loader.__name__
    # both spellings of every word hold its one trained row, the bare one plus the matrix's
    # shift (the base vocabulary's mean bare-minus-word-initial row), input and output
    from safetensors.torch import load_file

    saved = load_file(str(out / "03-p3" / "new_rows.safetensors"))
    assert saved["input"].shape[0] == len(WORDS)  # one row per word
    sides = [(model.get_input_embeddings().weight, saved["alias_shift_input"])]
    if not tied:
        sides.append((model.get_output_embeddings().weight, saved["alias_shift_output"]))
    for word in WORDS:
        space = [i for i in tokenizer(f"a {word}", add_special_tokens=False)["input_ids"]
                 if i >= base_entries]
        bare = [i for i in tokenizer(f"({word}", add_special_tokens=False)["input_ids"]
                if i >= base_entries]
        assert len(space) == len(bare) == 1 and space != bare, word
        row = saved["input"][saved["ids"].tolist().index(space[0])]
        assert torch.equal(sides[0][0][space[0]], row), word
        for matrix, shift in sides:
            assert torch.equal(matrix[bare[0]], matrix[space[0]] + shift), word
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), grown) and torch.isfinite(logits).all()
