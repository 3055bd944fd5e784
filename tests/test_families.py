"""The studied model families: detection by model_type, loading with each architecture's quirks
(tie setting, padding rows, fused LoRA targets, eager attention), presets and their recipes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from helpers_families import STAND_INS, build_tiny_family

from wake2vec.api import ModelRequest
from wake2vec.errors import UnknownNameError, UserInputError
from wake2vec.modeling import read_model_type
from wake2vec.presets import PRESETS, get_preset, preset_names
from wake2vec.recipe import load_recipe
from wake2vec.registry import get_registry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
MODEL_RECIPES = sorted((REPO / "recipes" / "models").glob("*.toml"))

EXPECTED_TARGETS = {
    "llama": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    "mistral": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    "qwen2": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    "gemma2": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    "phi3": {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"},
    "gpt2": {"c_attn", "c_proj", "c_fc"},
}

PUBLISHED_PARAMS = {  # total parameters as the model cards give them
    "tinyllama-1.1b-chat": 1.100e9,
    "tinyllama-1.1b-3t": 1.100e9,
    "llama-3.2-1b": 1.236e9,
    "llama-3.2-3b": 3.213e9,
    "llama-3.1-8b": 8.030e9,
    "mistral-7b-v0.3": 7.248e9,
    "phi-3.5-mini": 3.821e9,
    "qwen2.5-14b": 14.77e9,
    "gemma-2-9b": 9.242e9,
    "gpt2": 124.4e6,
    "distilgpt2": 81.9e6,
}


def request(name: str | None, **kw) -> ModelRequest:
    fields = dict(
        dtype="float32",
        quantization="none",
        trust_remote_code=False,
        seed=0,
        cache_dir=Path("/nonexistent-cache"),
    )
    fields.update(kw)
    return ModelRequest(name=name, **fields)


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    return {family: build_tiny_family(root / family, family) for family in STAND_INS}


# --------------------------------------------------------------------------- loading


@pytest.mark.parametrize("family", list(STAND_INS))
def test_each_family_is_detected_from_config_and_loads_with_its_quirks(stand_ins, family):
    directory = stand_ins[family]
    registry = get_registry()
    model_type = read_model_type(str(directory))
    entry = registry.family_for_model_type(model_type)
    assert entry is not None and entry.name == family

    loaded = registry.create("model", family, {}).load(request(str(directory)))
    _, tied, padding = STAND_INS[family]
    model, tokenizer = loaded.model, loaded.tokenizer
    assert loaded.family == family
    # the model's own tie setting is kept: an untied head stays a separate, different matrix
    assert loaded.tied is tied
    head, embed = model.get_output_embeddings().weight, model.get_input_embeddings().weight
    assert (head.data_ptr() == embed.data_ptr()) is tied
    if not tied:
        assert not (head == embed).all()
    # padding rows past the tokenizer are reported, not hidden
    assert embed.shape[0] - len(tokenizer) == padding
    if padding:
        assert any("padding" in note for note in loaded.notes)
    # LoRA targets are the family's and exist as layers in the model
    leaf_names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    assert set(loaded.lora_targets) == EXPECTED_TARGETS[family]
    assert set(loaded.lora_targets) <= leaf_names


def test_gemma2_loads_with_eager_attention(stand_ins):
    loaded = get_registry().create("model", "gemma2", {}).load(request(str(stand_ins["gemma2"])))
    assert loaded.model.config._attn_implementation == "eager"


def test_a_4bit_phi3_keeps_its_fused_lora_targets(stand_ins):
    bnb = pytest.importorskip("bitsandbytes")
    family = get_registry().create("model", "phi3", {"preset": "phi-3.5-mini"})
    loaded = family.load(request(str(stand_ins["phi3"]), dtype="bfloat16", quantization="nf4"))
    assert loaded.lora_targets == ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")
    assert isinstance(loaded.model.model.layers[0].self_attn.qkv_proj, bnb.nn.Linear4bit)
    assert not any("suggests" in note for note in loaded.notes[:-1])
    assert "asks for bfloat16, nf4" in loaded.notes[-1]  # the preset suggests float16


def test_a_tied_llama_stays_tied(tmp_path):
    directory = build_tiny_family(tmp_path / "llama-tied", "llama", tied=True)
    loaded = get_registry().create("model", "llama", {}).load(request(str(directory)))
    assert loaded.tied is True


def test_a_family_refuses_another_architecture(stand_ins):
    family = get_registry().create("model", "phi3", {})
    with pytest.raises(UserInputError, match=r"'llama' model, but model.family is 'phi3'"):
        family.load(request(str(stand_ins["llama"])))


def test_a_preset_fills_the_hub_id_and_a_local_name_wins(stand_ins):
    registry = get_registry()
    family = registry.create("model", "llama", {"preset": "llama-3.2-1b"})
    assert family.source(request(None)) == "meta-llama/Llama-3.2-1B"
    gpt2 = registry.create("model", "gpt2", {"preset": "distilgpt2"})
    loaded = gpt2.load(request(str(stand_ins["gpt2"])))
    assert loaded.source == str(stand_ins["gpt2"])
    assert any("instead of distilbert/distilgpt2" in note for note in loaded.notes)


def test_a_family_without_name_or_preset_says_what_to_set():
    family = get_registry().create("model", "mistral", {})
    with pytest.raises(
        UserInputError, match=r"model.name .* or model.preset \(one of: mistral-7b-v0.3\)"
    ):
        family.load(request(None))


# --------------------------------------------------------------------------- presets


def test_presets_resolve_by_name_and_hub_id():
    assert get_preset("llama-3.2-1b").hub_id == "meta-llama/Llama-3.2-1B"
    assert get_preset("Qwen/Qwen2.5-14B").name == "qwen2.5-14b"
    assert get_preset("GPT2").name == "gpt2"


def test_an_unknown_preset_lists_close_matches():
    with pytest.raises(UnknownNameError) as info:
        get_preset("llama-3.2-1")
    message = str(info.value)
    assert "did you mean 'llama-3.2-1b'" in message
    assert "qwen2.5-14b" in message  # the full list follows


def test_recipe_params_reject_unknown_and_foreign_presets():
    registry = get_registry()
    params = registry.get("model", "llama").impl.Params
    with pytest.raises(ValueError, match="did you mean 'tinyllama-1.1b-chat'"):
        params.model_validate({"preset": "tinyllama-chat"})
    with pytest.raises(
        ValueError, match=r'is a gemma2 model, not llama; set model.family = "gemma2"'
    ):
        params.model_validate({"preset": "gemma-2-9b"})


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_numbers_add_up_to_the_published_size(name):
    preset = get_preset(name)
    arch = preset.arch
    total = arch.body_linear_params() + arch.embedding_params()
    if arch.mlp == "plain":  # GPT-2: position embeddings, biases and layer norms are not small
        h = arch.hidden_size
        total += arch.max_positions * h + arch.layers * (9 * h + 4 * h) + 2 * h
    assert total == pytest.approx(PUBLISHED_PARAMS[name], rel=0.015)


def test_presets_carry_the_quirks_of_the_study_table():
    assert get_preset("qwen2.5-14b").padding_rows == 399
    assert get_preset("phi-3.5-mini").padding_rows == 53
    assert get_preset("gemma-2-9b").attn_implementation == "eager"
    assert {p.name for p in PRESETS.values() if p.tied} == {
        "llama-3.2-1b",
        "llama-3.2-3b",
        "gemma-2-9b",
        "gpt2",
        "distilgpt2",
    }
    assert {p.tokenizer for p in PRESETS.values()} == {"sentencepiece", "byte-level"}


@pytest.mark.parametrize("family", list(STAND_INS))
def test_families_list_their_presets(family):
    impl = get_registry().get("model", family).impl
    assert impl.presets == preset_names(family) and impl.presets
    for name in impl.presets:
        assert get_preset(name).lora_targets == impl.lora_targets


# --------------------------------------------------------------------------- recipes


def test_there_is_one_recipe_per_studied_model():
    assert {p.stem for p in MODEL_RECIPES} == set(PRESETS)


@pytest.mark.parametrize("path", MODEL_RECIPES, ids=lambda p: p.stem)
def test_model_recipes_validate_and_follow_their_preset(path):
    recipe = load_recipe(path)
    preset = get_preset(path.stem)
    assert recipe.model.preset == preset.name and recipe.model.params == {}
    assert recipe.model.family == preset.family  # from the preset
    assert recipe.model.name == preset.hub_id
    assert (recipe.model.dtype, recipe.model.quantization) == (preset.dtype, preset.quantization)
    assert recipe.data.seq_len == preset.p1.seq_len
    p1 = recipe.phases[0]
    assert (
        p1.optimizer,
        p1.learning_rate,
        p1.batch_size,
        p1.grad_accum,
        p1.warmup_steps,
        p1.steps,
    ) == (
        preset.p1.optimizer,
        preset.p1.learning_rate,
        preset.p1.batch_size,
        preset.p1.grad_accum,
        preset.p1.warmup_steps,
        preset.p1.steps,
    )
    p2 = recipe.phases[1]
    assert (p2.strategy, p2.params["r"], p2.params["alpha"], p2.params["dropout"]) == (
        "lora",
        8,
        16,
        0.1,
    )
    assert (p2.optimizer, p2.learning_rate, p2.steps) == (
        preset.p2.optimizer,
        preset.p2.learning_rate,
        preset.p2.steps,
    )
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# ")
    assert f"wake2vec run recipes/models/{path.name}" in text.split("\n[", 1)[0]
    assert "placeholder" in text
    raw = tomllib.loads(text)
    assert raw["model"]["preset"] == preset.name and "family" not in raw["model"]
    assert raw["data"]["corpus"] == "../../data/demo_corpus.txt"


# --------------------------------------------------------------------------- model.preset

PRESET_RECIPE = """\
[run]
name = "preset"

[model]
{model}

[data]
corpus = "{data}/demo_corpus.txt"
lexicon = "{data}/demo_lexicon.txt"

[[phases]]
strategy = "embed-only"
steps = 10
learning_rate = 1e-3
"""


def preset_recipe(tmp_path: Path, model: str) -> Path:
    path = tmp_path / "preset.toml"
    data = (REPO / "data").as_posix()
    path.write_text(PRESET_RECIPE.format(model=model, data=data), encoding="utf-8")
    return path


def test_model_preset_picks_the_family_and_the_hub_id(tmp_path):
    recipe = load_recipe(preset_recipe(tmp_path, 'preset = "Llama-3.2-1B"'))
    assert (recipe.model.preset, recipe.model.family, recipe.model.name) == (
        "llama-3.2-1b",
        "llama",
        "meta-llama/Llama-3.2-1B",
    )
    assert recipe.model.family_params() == {"preset": "llama-3.2-1b"}
    (tmp_path / "my-gpt2").mkdir()
    local = load_recipe(preset_recipe(tmp_path, 'preset = "gpt2"\nname = "./my-gpt2"'))
    assert (local.model.family, local.model.name) == ("gpt2", str(tmp_path / "my-gpt2"))
    # a family that matches the preset is fine; the family's own presets check passes
    same = load_recipe(preset_recipe(tmp_path, 'preset = "phi-3.5-mini"\nfamily = "phi3"'))
    assert same.model.family == "phi3"


@pytest.mark.parametrize(
    "model, message",
    [
        (
            'preset = "llama-3.2-1"',
            "model.preset: unknown model preset 'llama-3.2-1'; did you mean 'llama-3.2-1b' or "
            "'llama-3.2-3b' or 'llama-3.1-8b'? (available: distilgpt2, gemma-2-9b, gpt2, "
            "llama-3.1-8b, llama-3.2-1b, llama-3.2-3b, mistral-7b-v0.3, phi-3.5-mini, "
            "qwen2.5-14b, tinyllama-1.1b-3t, tinyllama-1.1b-chat)",
        ),
        (
            'preset = "gemma-2-9b"\nfamily = "llama"',
            "model: model.preset 'gemma-2-9b' is a gemma2 model but model.family is 'llama'; "
            "remove model.family (the preset sets it)",
        ),
        (
            'family = "llama"\nparams = { preset = "llama-3.2-1b" }',
            "model.params: the preset is no longer a family parameter: write "
            'model.preset = "llama-3.2-1b" instead of model.params.preset',
        ),
    ],
    ids=["unknown", "other-family", "moved-from-params"],
)
def test_a_bad_model_preset_is_a_recipe_error(cli, tmp_path, model, message):
    recipe = preset_recipe(tmp_path, model)
    result = cli("validate", str(recipe))
    assert result.exit_code == 2
    assert result.output.rstrip("\n") == f"{recipe} is not valid (1 error):\n  {message}"


def test_validate_cli_accepts_a_model_recipe(cli):
    result = cli("validate", str(REPO / "recipes" / "models" / "phi-3.5-mini.toml"))
    assert result.exit_code == 0, result.output
    assert 'preset = "phi-3.5-mini"' in result.output
