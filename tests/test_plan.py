"""``wake2vec plan``: the memory arithmetic, its calibration against the study's measurements,
and the command's output and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import write_recipe
from helpers_families import build_tiny_family

from wake2vec.errors import UserInputError
from wake2vec.plan import (
    GIB,
    GPUS,
    ModelFacts,
    PhaseInput,
    estimate_terms,
    rows_after_injection,
    total_gib,
)
from wake2vec.plan_recipe import plan_recipe
from wake2vec.presets import Architecture, get_preset
from wake2vec.recipe import load_recipe
from wake2vec.vocab.lexicon import load_lexicon

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "recipes" / "models"
NEW = 45_000

# The study's reported peak VRAM at 4-bit (CONTEXT.md), low and high, by preset and sequence length.
STUDY_VRAM = {
    ("tinyllama-1.1b-chat", 256): (4.0, 4.0),
    ("llama-3.2-1b", 512): (3.0, 4.0),
    ("llama-3.2-3b", 256): (5.0, 6.0),
    ("llama-3.2-3b", 512): (5.0, 6.0),
    ("llama-3.1-8b", 256): (9.0, 10.0),
    ("qwen2.5-14b", 128): (12.0, 13.0),
}


def facts(
    name: str, *, tied: bool | None = None, quantization: str = "nf4", dtype: str = "float16"
) -> ModelFacts:
    preset = get_preset(name)
    arch = preset.arch if tied is None else replace(preset.arch, tied=tied)
    return ModelFacts(
        preset.name,
        arch,
        preset.tokenizer_entries,
        dtype,
        quantization,
        eager_attention=preset.attn_implementation == "eager",
        lora_targets=preset.lora_targets,
    )


def p1(name: str, **changes) -> PhaseInput:
    s = get_preset(name).p1
    return replace(PhaseInput("p1", "rows", s.seq_len, s.batch_size, s.optimizer), **changes)


# --------------------------------------------------------------------------- calibration


@pytest.mark.parametrize("tied", [True, False], ids=["tied-as-the-study-did", "head-as-shipped"])
@pytest.mark.parametrize(("name", "seq"), list(STUDY_VRAM), ids=lambda v: str(v))
def test_estimates_land_within_30_percent_of_the_study(name, seq, tied):
    """The study's setup: NF4 body with fp16 compute on a T4, 45K new rows, the preset's P1
    batch and optimiser, gradient checkpointing (peft's prepare_model_for_kbit_training turns
    it on). The study tied every head (CONTEXT.md); the estimate lands within 30% whether the
    head is counted tied (one matrix, input rows only) or untied as the model ships."""
    low, high = STUDY_VRAM[(name, seq)]
    model = facts(name, tied=True if tied else None)
    estimate = total_gib(model, p1(name, seq_len=seq, gradient_checkpointing=True), NEW)
    reported = (low + high) / 2
    assert 0.7 * reported <= estimate <= 1.3 * reported, (
        f"{estimate:.2f} GiB vs {reported} reported"
    )


def test_qwen_14b_at_seq_256_does_not_fit_a_t4_as_the_study_found():
    recipe = load_recipe(MODELS / "qwen2.5-14b.toml", ["data.seq_len=256"])
    plan = plan_recipe(recipe, gpu="t4", new_tokens=NEW)
    phase = plan.phases[0]
    assert not plan.fits and not phase.fits
    assert phase.total_with_checkpointing_gib > GPUS["t4"][1]  # not even with checkpointing
    assert plan_recipe(recipe, gpu="a100-40", new_tokens=NEW).fits


# --------------------------------------------------------------------------- the terms


def test_each_term_follows_the_setting_it_depends_on():
    base = estimate_terms(facts("llama-3.2-1b"), p1("llama-3.2-1b"), NEW)
    longer = estimate_terms(facts("llama-3.2-1b"), p1("llama-3.2-1b", seq_len=1024), NEW)
    assert longer["logits"] == pytest.approx(2 * base["logits"])
    assert longer["activations"] == pytest.approx(2 * base["activations"])
    assert longer["weights"] == base["weights"]
    checkpointed = estimate_terms(
        facts("llama-3.2-1b"), p1("llama-3.2-1b", gradient_checkpointing=True), NEW
    )
    assert checkpointed["activations"] < base["activations"] / 5
    full = estimate_terms(facts("llama-3.2-1b", quantization="none"), p1("llama-3.2-1b"), NEW)
    body = get_preset("llama-3.2-1b").arch.body_linear_params()
    assert full["weights"] - base["weights"] == pytest.approx(body * (2 - 0.5625))  # NF4: 4.5 bits
    assert full["dequant buffer"] == 0
    optimizers = {
        o: estimate_terms(facts("llama-3.2-1b"), p1("llama-3.2-1b", optimizer=o), NEW)["optimizer"]
        for o in ("adamw", "adamw8bit", "adafactor")
    }
    assert optimizers["adamw"] == pytest.approx(4 * optimizers["adamw8bit"])
    assert optimizers["adafactor"] < optimizers["adamw8bit"] / 100


def test_an_untied_head_trains_output_rows_too():
    tied = estimate_terms(facts("llama-3.1-8b", tied=True), p1("llama-3.1-8b"), NEW)
    untied = estimate_terms(facts("llama-3.1-8b"), p1("llama-3.1-8b"), NEW)
    assert untied["trainable"] == pytest.approx(2 * tied["trainable"])
    assert tied["trainable"] == pytest.approx(NEW * 4096 * 4)  # fp32 rows


def test_new_ids_fill_padding_rows_before_the_matrix_grows():
    qwen = facts("qwen2.5-14b")
    assert rows_after_injection(qwen, NEW) == 151_665 + NEW
    assert rows_after_injection(qwen, 100) == 152_064  # inside the 399 padding rows


def test_lora_phase_trains_adapters_not_rows():
    name = "phi-3.5-mini"
    lora = estimate_terms(facts(name), p1(name, kind="lora"), NEW)
    rows = estimate_terms(facts(name), p1(name), NEW)
    # r 8 on qkv_proj, o_proj, gate_up_proj, down_proj of 32 layers
    adapters = 8 * 32 * ((3072 + 9216) + (3072 + 3072) + (3072 + 16384) + (8192 + 3072))
    assert lora["trainable"] == pytest.approx(4 * adapters)
    assert lora["trainable"] < rows["trainable"] / 10


def test_architecture_from_a_gpt2_config():
    arch = Architecture.from_config(
        {
            "model_type": "gpt2",
            "n_embd": 768,
            "n_layer": 12,
            "n_head": 12,
            "vocab_size": 50257,
            "n_positions": 1024,
        }
    )
    assert (arch.intermediate_size, arch.kv_heads, arch.mlp, arch.tied) == (3072, 12, "plain", True)
    assert arch == get_preset("gpt2").arch


# --------------------------------------------------------------------------- from recipes


def test_a_recipe_without_preset_reads_the_local_config(tmp_path):
    model_dir = build_tiny_family(tmp_path / "qwen-like", "qwen2")
    recipe = write_recipe(
        tmp_path / "r.toml",
        f"""
        [run]
        name = "local"
        [model]
        name = "{model_dir}"
        [data]
        corpus = "@DATA@/demo_corpus.txt"
        lexicon = "@DATA@/demo_lexicon.txt"
        seq_len = 32
        [[phases]]
        strategy = "embed-only"
        steps = 1
        learning_rate = 1e-3
    """,
    )
    plan = plan_recipe(load_recipe(recipe), gpu="t4")
    config = json.loads((model_dir / "config.json").read_text())
    words = load_lexicon(REPO / "data" / "demo_lexicon.txt").words
    assert plan.model.endswith("config.json")
    assert plan.tied is False
    assert plan.new_tokens == 2 * len(words)  # whole-word: a space form and a bare form
    assert plan.trainable_rows == len(words)  # ... reading one row
    assert any("x 2 ids per word (whole-word injector)" in note for note in plan.notes)
    # new ids start after the tokenizer's entries, not after the padding rows
    assert plan.rows_after_injection == max(
        config["vocab_size"], config["vocab_size"] - 9 + plan.new_tokens
    )
    assert plan.fits


def test_a_hub_id_without_preset_is_a_clear_error(tmp_path):
    recipe = write_recipe(
        tmp_path / "r.toml",
        """
        [run]
        name = "hub"
        [model]
        family = "auto"
        name = "someone/some-model"
        [data]
        corpus = "@DATA@/demo_corpus.txt"
        lexicon = "@DATA@/demo_lexicon.txt"
        [[phases]]
        strategy = "embed-only"
        steps = 1
        learning_rate = 1e-3
    """,
    )
    with pytest.raises(
        UserInputError, match=r"names no preset .* 'someone/some-model' is not a local directory"
    ):
        plan_recipe(load_recipe(recipe))


PRESET_ONLY = """
    [run]
    name = "preset"
    [model]
    {model}
    dtype = "float16"
    quantization = "nf4"
    [data]
    corpus = "@DATA@/demo_corpus.txt"
    lexicon = "@DATA@/demo_lexicon.txt"
    seq_len = 512
    [[phases]]
    strategy = "embed-only"
    steps = 1
    learning_rate = 1e-3
    batch_size = 1
"""


@pytest.mark.parametrize(
    "model",
    ['preset = "llama-3.2-1b"', 'name = "meta-llama/Llama-3.2-1B"'],
    ids=["preset", "hub-id"],
)
def test_plan_reads_model_preset_or_a_presets_hub_id(cli, tmp_path, model):
    recipe = write_recipe(tmp_path / "r.toml", PRESET_ONLY.format(model=model))
    result = cli("plan", str(recipe), "--new-tokens", "45000", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["model"] == "llama-3.2-1b" and data["tied"] is True
    assert (
        "architecture numbers from preset llama-3.2-1b (meta-llama/Llama-3.2-1B)" in data["notes"]
    )
    assert data["rows_after_injection"] == 128_256 + 45_000


# --------------------------------------------------------------------------- the command


def test_plan_cli_fits_exit_0(cli):
    result = cli("plan", str(MODELS / "llama-3.2-1b.toml"), "--new-tokens", "45000")
    assert result.exit_code == 0, result.output
    assert "phase p1" in result.output and "fits" in result.output
    assert "45,000 (45,000 trainable rows) -> 173,256 embedding rows" in result.output
    for term in ("weights", "trainable", "optimizer", "activations", "logits", "cuda context"):
        assert term in result.output


def test_plan_cli_does_not_fit_exit_1_with_advice(cli):
    result = cli(
        "plan",
        str(MODELS / "llama-3.1-8b.toml"),
        "--new-tokens",
        "45000",
        "--set",
        "model.quantization=none",
        "--set",
        "model.dtype=bfloat16",
        "--set",
        "phases[0].optimizer=adamw",
    )
    assert result.exit_code == 1
    assert "DOES NOT FIT" in result.output
    assert 'a 4-bit body (model.quantization = "nf4"' in result.output
    assert "8-bit AdamW" in result.output and "Adafactor" in result.output
    assert "or a larger GPU: a100-40" in result.output


def test_plan_cli_json_and_gpu_choice(cli):
    result = cli(
        "plan", str(MODELS / "qwen2.5-14b.toml"), "--new-tokens", "45000", "--gpu", "h100", "--json"
    )
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["fits"] is True and data["gpu"] == "h100" and data["tied"] is False
    assert data["phases"][0]["terms_gib"]["weights"] > 9


def test_plan_cli_gradient_checkpointing_flag(cli):
    args = ("plan", str(MODELS / "llama-3.2-3b.toml"), "--new-tokens", "45000", "--json")
    plain = json.loads(cli(*args).output)["phases"][0]
    checkpointed = json.loads(cli(*args, "--gradient-checkpointing").output)["phases"][0]
    assert checkpointed["gradient_checkpointing"] is True
    assert checkpointed["total_gib"] < plain["total_gib"]


def test_plan_cli_bad_input_exit_2(cli, tmp_path):
    result = cli("plan", str(tmp_path / "missing.toml"))
    assert result.exit_code == 2
    result = cli("plan", str(MODELS / "gpt2.toml"), "--gpu", "k80")
    assert result.exit_code == 2


def test_plan_imports_no_torch():
    code = "import sys, wake2vec.plan, wake2vec.cli.plan, wake2vec.presets; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_estimates_are_gib_not_bytes():
    assert total_gib(facts("gpt2", quantization="none", dtype="float32"), p1("gpt2"), 480) < 2
    assert GIB == 2**30


def test_a_sequence_longer_than_the_model_is_noted():
    recipe = load_recipe(MODELS / "gpt2.toml", ["data.seq_len=2048"])
    notes = plan_recipe(recipe, new_tokens=10).notes
    assert "data.seq_len 2048 exceeds the model's 1024 positions" in notes


def test_nf4_constant_matches_what_bitsandbytes_stores(tmp_path):
    """The loader's 4-bit layers hold NF4_BYTES per weight; embeddings and head stay 16-bit."""
    bnb = pytest.importorskip("bitsandbytes")
    import torch

    from wake2vec.modeling import load_pretrained
    from wake2vec.plan import NF4_BYTES

    directory = build_tiny_family(tmp_path / "llama", "llama")
    model = load_pretrained(
        str(directory),
        family="llama",
        dtype="bfloat16",
        quantization="nf4",
        trust_remote_code=False,
    ).model
    stored = weights = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            state = module.weight.quant_state
            stored += module.weight.numel() * module.weight.element_size()
            stored += state.absmax.numel() * state.absmax.element_size()
            weights += state.shape.numel()
    assert weights > 0 and stored / weights == pytest.approx(NF4_BYTES)
    assert model.get_input_embeddings().weight.dtype == torch.bfloat16
    assert not isinstance(model.get_output_embeddings(), bnb.nn.Linear4bit)


def test_trainable_terms_follow_the_rows_and_logits_every_id():
    """Two ids per word reading one row: the rows, gradients and optimiser state count rows,
    the head's logits count ids."""
    one_each = estimate_terms(facts("tinyllama-1.1b-chat"), p1("tinyllama-1.1b-chat"), NEW)
    shared = estimate_terms(
        facts("tinyllama-1.1b-chat"), p1("tinyllama-1.1b-chat", trainable_rows=NEW // 2), NEW)
    for term in ("trainable", "gradients"):
        assert shared[term] == pytest.approx(one_each[term] / 2)
    assert shared["optimizer"] < one_each["optimizer"]
    assert shared["logits"] == one_each["logits"] and shared["weights"] == one_each["weights"]
