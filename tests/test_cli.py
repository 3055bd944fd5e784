"""The command line: help everywhere, version, exit codes, and no torch import on light commands."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import RECIPES

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
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120)
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
                          capture_output=True, text=True, timeout=120)
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
