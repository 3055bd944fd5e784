"""The command line: help everywhere, version, exit codes, and no torch import on light commands."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import HANG_GUARD_S, RECIPES

PROBE = """
import sys
from wake2vec.cli import cli
try:
    cli.main(args=sys.argv[1:], prog_name="wake2vec", standalone_mode=False)
finally:
    heavy = sorted(m for m in ("torch", "transformers", "numpy", "peft", "accelerate", "datasets")
                   if m in sys.modules)
    print("HEAVY=" + ",".join(heavy), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [
    ["--help"],
    ["run", "--help"],
    ["validate", str(RECIPES / "three_phase.toml")],
    ["list-plugins"],
    ["list-plugins", "--json"],
], ids=["help", "run-help", "validate", "list-plugins", "list-plugins-json"])
def test_light_commands_do_not_import_torch(args):
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY=\n" in proc.stderr or proc.stderr.rstrip().endswith("HEAVY="), proc.stderr


def test_version(cli):
    from wake2vec import __version__

    result = cli("--version")
    assert result.exit_code == 0 and result.output.strip() == f"wake2vec, version {__version__}"


def test_help_lists_commands(cli):
    result = cli("--help")
    assert result.exit_code == 0
    for name in ("run", "validate", "list-plugins"):
        assert f"  {name}" in result.output


@pytest.mark.parametrize("command", ["run", "validate", "list-plugins"])
def test_every_command_has_help(cli, command):
    result = cli(command, "--help")
    assert result.exit_code == 0 and "Usage: " in result.output


def test_usage_error_exits_2(cli):
    from click.testing import CliRunner

    from wake2vec.cli import cli as group

    result = CliRunner().invoke(group, ["run"])
    assert result.exit_code == 2 and "Missing argument 'RECIPE'" in result.output


def test_console_script_runs(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "wake2vec", "list-plugins", "--json"],
                          capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["plugins"]


def test_every_shipped_recipe_validates(cli):
    recipes = sorted(RECIPES.rglob("*.toml"))
    assert recipes
    for recipe in recipes:
        result = cli("validate", str(recipe))
        assert result.exit_code == 0, f"{recipe}: {result.output}"
        first = recipe.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# "), f"{recipe} must open with a comment saying what it does"
        assert "wake2vec run" in recipe.read_text(encoding="utf-8"), f"{recipe} must show the command"


FAMILIES = ("llama", "mistral", "phi3", "qwen2", "gemma2", "gpt2")


def test_list_plugins_shows_every_family_with_its_presets(cli):
    from wake2vec.presets import PRESETS, preset_names

    result = cli("list-plugins")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    family_lines = {line.split()[1]: line for line in lines if line.startswith("model ")}
    for family in FAMILIES:
        assert f"Presets: {', '.join(preset_names(family))}." in family_lines[family]
    assert "Presets:" not in family_lines["auto"]
    start = lines.index('Model presets (model.preset = "NAME" sets the family and the hub id):')
    table = {line.split()[0]: line.split()[1:] for line in lines[start + 2 :] if line.strip()}
    assert table == {p.name: [p.family, p.hub_id] for p in PRESETS.values()}
    assert table["phi-3.5-mini"] == ["phi3", "microsoft/Phi-3.5-mini-instruct"]


def test_list_plugins_json_carries_the_presets(cli):
    payload = json.loads(cli("list-plugins", "--json").output)
    families = {p["name"]: p for p in payload["plugins"] if p["kind"] == "model"}
    assert families["llama"]["presets"] == [
        "tinyllama-1.1b-chat",
        "tinyllama-1.1b-3t",
        "llama-3.2-1b",
        "llama-3.2-3b",
        "llama-3.1-8b",
    ]
    assert families["gpt2"]["presets"] == ["gpt2", "distilgpt2"]
    assert families["demo"]["presets"] == []
    presets = {p["name"]: p for p in payload["presets"]}
    assert {p["family"] for p in presets.values()} == set(FAMILIES)
    assert presets["qwen2.5-14b"] == {
        "name": "qwen2.5-14b",
        "family": "qwen2",
        "hub_id": "Qwen/Qwen2.5-14B",
        "tokenizer": "byte-level",
        "tied": False,
        "dtype": "float16",
        "quantization": "nf4",
    }
    # every preset a family lists is one model.preset accepts, and the other way round
    assert sorted(n for f in families.values() for n in f["presets"]) == sorted(presets)


def test_list_plugins_of_another_kind_shows_no_presets(cli):
    result = cli("list-plugins", "--kind", "metric")
    assert result.exit_code == 0 and "Model presets" not in result.output
    assert json.loads(cli("list-plugins", "--kind", "metric", "--json").output)["presets"] == []
