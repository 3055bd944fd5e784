"""Golden messages for broken recipes: exit 2, every problem listed with its exact key path."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_recipe

BASE = """\
# a small valid recipe used as the starting point of each broken one
[run]
name = "golden"
seed = 7

[model]
family = "demo"

[data]
corpus = "@DATA@/demo_corpus.txt"
lexicon = "@DATA@/demo_lexicon.txt"
seq_len = 64

[injection]
initializer = { name = "compositional", params = { alpha = 0.25 } }

[[phases]]
strategy = "embed-only"
steps = 10
learning_rate = 1e-3
"""

# (case id, text replacements applied to BASE, --set overrides, expected stderr after the header)
CASES = [
    ("unknown-key", [('seed = 7', 'seed = 7\nnmae = "x"')], [],
     ["run.nmae: unknown key; did you mean 'name'?"]),
    ("wrong-type", [("seq_len = 64", 'seq_len = "long"')], [],
     ["data.seq_len: Input should be a valid integer, unable to parse string as an integer (got 'long')"]),
    ("unknown-plugin-near-miss", [('name = "compositional"', 'name = "compositonal"')], [],
     ["injection.initializer.name: unknown initializer 'compositonal'; did you mean 'compositional'? "
      "(available: compositional, mean, spherical, subword-mean)"]),
    ("bad-plugin-param", [("alpha = 0.25", "alpah = 0.2")], [],
     ["injection.initializer.params.alpah: unknown key; did you mean 'alpha'?"]),
    ("missing-data-file", [("demo_corpus.txt", "no_such_corpus.txt")], [],
     ["data.corpus: file not found: @DATA@/no_such_corpus.txt"]),
    ("negative-learning-rate", [("learning_rate = 1e-3", "learning_rate = -1e-3")], [],
     ["phases[0].learning_rate: Input should be greater than 0 (got -0.001)"]),
    ("empty-phase-list", [], ["phases=[]"],
     ["phases: List should have at least 1 item after validation, not 0"]),
    ("unknown-phase-strategy", [('strategy = "embed-only"', 'strategy = "embed-onli"')], [],
     ["phases[0].strategy: unknown phase 'embed-onli'; did you mean 'embed-only'? "
      "(available: embed-only, lora, morpheme-alignment)"]),
    ("bad-set-path-index", [], ["phases[2].steps=5"],
     ["phases[2].steps: phases has 1 entry ('phases[2].steps=5')"]),
    ("bad-set-path-scalar", [], ["run.seed.value=5"],
     ["run.seed.value: run.seed is not a table ('run.seed.value=5')"]),
    ("bad-set-unknown-key", [], ["model.dtyp=bfloat16"],
     ["model.dtyp: unknown key; did you mean 'dtype'?"]),
    ("toml-syntax-error", [("seed = 7", "seed = = 7")], [],
     ["TOML syntax error: Invalid value (at line 4, column 8)"]),
    ("nan-and-zero-steps", [("steps = 10", "steps = 0"), ("learning_rate = 1e-3", "learning_rate = nan")], [],
     ["phases[0].steps: Input should be greater than 0 (got 0)",
      "phases[0].learning_rate: Input should be a finite number (got nan)"]),
    ("absurd-seq-len", [("seq_len = 64", "seq_len = 1000000000")], [],
     ["data.seq_len: Input should be less than or equal to 131072 (got 1000000000)"]),
    ("several-at-once", [('seed = 7', 'seed = -1'), ("alpha = 0.25", "alpha = 0.9"),
                          ("family = \"demo\"", "family = \"dem\"")], [],
     ["run.seed: Input should be greater than or equal to 0 (got -1)",
      "model.family: unknown model 'dem'; did you mean 'demo'? "
      "(available: auto, demo, gemma2, gpt2, llama, mistral, phi3, qwen2)",
      "injection.initializer.params.alpha: Input should be less than or equal to 0.5 (got 0.9)"]),
    ("model-path-missing", [('family = "demo"', 'name = "./no-such-model"')], [],
     ["model.name: directory not found: @TMP@/no-such-model"]),
]


@pytest.mark.parametrize("case_id, edits, overrides, expected", CASES, ids=[c[0] for c in CASES])
def test_broken_recipe_golden(cli, tmp_path: Path, case_id, edits, overrides, expected):
    from conftest import DATA

    text = BASE
    for old, new in edits:
        assert old in text, f"{case_id}: edit target {old!r} missing"
        text = text.replace(old, new, 1)
    recipe = write_recipe(tmp_path / "broken.toml", text)
    args = ["validate", str(recipe)] + [a for o in overrides for a in ("--set", o)]
    result = cli(*args)
    assert result.exit_code == 2
    n = len(expected)
    header = f"{recipe} is not valid ({n} error{'s' if n != 1 else ''}):"
    lines = [header] + ["  " + e.replace("@DATA@", str(DATA)).replace("@TMP@", str(tmp_path))
                        for e in expected]
    assert result.output.rstrip("\n") == "\n".join(lines)
    assert "Traceback" not in result.output


def test_run_rejects_the_same_recipe_before_loading_anything(cli, tmp_path: Path):
    recipe = write_recipe(tmp_path / "r.toml", BASE.replace("alpha = 0.25", "alpah = 0.2"))
    result = cli("run", str(recipe), "--output-dir", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "injection.initializer.params.alpah: unknown key" in result.output
    assert not (tmp_path / "out").exists()


def test_missing_recipe_file(cli, tmp_path: Path):
    result = cli("validate", str(tmp_path / "nope.toml"))
    assert result.exit_code == 2
    assert result.output.strip().endswith(f"no such recipe file: {tmp_path / 'nope.toml'}")


def test_valid_base_recipe_resolves_with_defaults(cli, tmp_path: Path):
    import json

    recipe = write_recipe(tmp_path / "ok.toml", BASE)
    result = cli("validate", str(recipe), "--json", "--set", "phases[0].steps=25")
    assert result.exit_code == 0, result.output
    resolved = json.loads(result.output)
    phase = resolved["phases"][0]
    assert phase["name"] == "p1" and phase["steps"] == 25 and phase["optimizer"] == "adamw"
    assert resolved["data"]["validation_fraction"] == 0.1
    assert resolved["injection"]["injector"] == {"name": "whole-word", "params": {}}


def test_traceback_only_on_request(cli, tmp_path: Path, monkeypatch):
    from wake2vec.errors import RecipeError

    recipe = write_recipe(tmp_path / "r.toml", BASE.replace("steps = 10", "steps = 0"))
    with pytest.raises(RecipeError):
        cli("--traceback", "validate", str(recipe))
    monkeypatch.setenv("WAKE2VEC_DEBUG", "1")
    with pytest.raises(RecipeError):
        cli("validate", str(recipe))


@pytest.mark.parametrize("word", ["null", "none", "None", " NULL "])
def test_set_null_removes_an_optional_key(cli, tmp_path: Path, word):
    import json

    with_morphemes = BASE.replace('seq_len = 64', 'seq_len = 64\nmorphemes = "@DATA@/demo_morphemes.csv"')
    recipe = write_recipe(tmp_path / "ok.toml", with_morphemes)
    result = cli("validate", str(recipe), "--json")
    assert json.loads(result.output)["data"]["morphemes"].endswith("demo_morphemes.csv")
    result = cli("validate", str(recipe), "--json", "--set", f"data.morphemes={word}")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["data"]["morphemes"] is None  # its default, not a file "null"
    # a required key removed is the error it would be in the file
    result = cli("validate", str(recipe), "--set", "data.lexicon=null")
    assert result.exit_code == 2 and "data.lexicon: required key is missing" in result.output


def test_set_reads_toml_values(cli, tmp_path: Path):
    import json

    recipe = write_recipe(tmp_path / "ok.toml", BASE)
    result = cli("validate", str(recipe), "--json", "--set", "phases[0].learning_rate=5e-4",
                 "--set", 'run.name="quoted-name"', "--set", "data.lexicon_in_training=true",
                 "--set", "injection.initializer.params={ alpha = 0.5 }")
    assert result.exit_code == 0, result.output
    resolved = json.loads(result.output)
    assert resolved["phases"][0]["learning_rate"] == 5e-4 and resolved["run"]["name"] == "quoted-name"
    assert resolved["data"]["lexicon_in_training"] is True
    assert resolved["injection"]["initializer"]["params"] == {"alpha": 0.5}
