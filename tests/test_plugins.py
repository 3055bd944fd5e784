"""Discovery and registry: built-ins, third-party entry points, failures, duplicates, misspellings."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import RECIPES, write_recipe

EXAMPLE = Path(__file__).parent / "example_plugin"


def install_example(fake_dists, monkeypatch) -> None:
    """Make tests/example_plugin visible exactly as pip would: metadata with its entry point."""
    import tomllib

    meta = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    fake_dists.add(meta["name"], meta["version"], meta["entry-points"]["wake2vec"])
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.delitem(sys.modules, "wake2vec_example", raising=False)


def test_every_kind_has_a_builtin_with_provenance(cli):
    result = cli("list-plugins", "--json")
    assert result.exit_code == 0
    payload = json.loads(result.output)
    kinds = {p["kind"] for p in payload["plugins"]}
    assert kinds == {"model", "injector", "initializer", "phase", "regularizer", "metric"}
    for plugin in payload["plugins"]:
        assert plugin["distribution"] == "wake2vec" and plugin["version"] and plugin["description"]


def test_list_plugins_table_and_kind_filter(cli):
    result = cli("list-plugins", "--kind", "initializer")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split()[:4] == ["KIND", "NAME", "PROVIDER", "VERSION"]
    assert all(line.startswith("initializer") for line in lines[1:])
    assert any(" spherical " in line for line in lines[1:])


def test_third_party_plugin_is_listed_and_usable(cli, fake_dists, monkeypatch, tmp_path):
    install_example(fake_dists, monkeypatch)
    payload = json.loads(cli("list-plugins", "--json").output)
    mine = {(p["kind"], p["name"]): p for p in payload["plugins"] if p["distribution"] == "wake2vec-example"}
    assert set(mine) == {("initializer", "example-noisy-mean"), ("model", "example-one-layer")}
    assert mine[("initializer", "example-noisy-mean")]["version"] == "0.1.0"
    assert mine[("initializer", "example-noisy-mean")]["plugin"] == "example"
    recipe = tmp_path / "r.toml"
    recipe.write_text((RECIPES / "three_phase.toml").read_text().replace("../data/", str(RECIPES.parent / "data") + "/"))
    result = cli("validate", str(recipe), "--json",
                 "--set", "model.family=example-one-layer",
                 "--set", 'injection.initializer={name="example-noisy-mean", params={noise=0.5}}')
    assert result.exit_code == 0, result.output
    resolved = json.loads(result.output)
    assert resolved["injection"]["initializer"] == {"name": "example-noisy-mean", "params": {"noise": 0.5}}
    bad = cli("validate", str(recipe), "--set", "injection.initializer.name=example-noisy-mean",
              "--set", "injection.initializer.params={noise=-1}")
    assert bad.exit_code == 2
    assert "injection.initializer.params.noise: Input should be greater than or equal to 0" in bad.output


def test_broken_plugin_warns_once_and_other_commands_work(cli, fake_dists):
    fake_dists.add("wake2vec-broken", "2.0", {"broken": "broken_plugin"},
                   {"broken_plugin": "import not_a_real_module_xyz\n"})
    result = cli("list-plugins")
    assert result.exit_code == 0
    warning = [line for line in result.output.splitlines() if "warning" in line]
    assert len(warning) == 1
    assert "wake2vec-broken 2.0" in warning[0] and "not_a_real_module_xyz" in warning[0]
    assert "WAKE2VEC_DISABLE_PLUGINS=broken" in warning[0]
    assert " spherical " in result.output


def test_broken_plugin_can_be_disabled(cli, fake_dists, monkeypatch):
    fake_dists.add("wake2vec-broken", "2.0", {"broken": "broken_plugin"},
                   {"broken_plugin": "raise RuntimeError('boom')\n"})
    monkeypatch.setenv("WAKE2VEC_DISABLE_PLUGINS", "broken")
    result = cli("list-plugins")
    assert result.exit_code == 0
    assert "warning" not in result.output
    assert "disabled by WAKE2VEC_DISABLE_PLUGINS: broken" in result.output


def test_duplicate_name_names_both_providers(cli, fake_dists):
    fake_dists.add("wake2vec-dupe", "0.3", {"dupe": "dupe_plugin"}, {"dupe_plugin": """
        from wake2vec import hookimpl
        from wake2vec.api import Initializer

        class Spherical(Initializer):
            '''Another spherical.'''
            name = "spherical"

        @hookimpl
        def wake2vec_register_initializers():
            return [Spherical]
    """})
    result = cli("list-plugins")
    assert result.exit_code == 1
    assert "initializer name 'spherical' is provided twice" in result.output
    assert "wake2vec_plugins.initializers.basic (wake2vec" in result.output
    assert "plugin dupe (wake2vec-dupe 0.3)" in result.output


def test_misspelt_hook_is_caught(cli, fake_dists):
    fake_dists.add("wake2vec-typo", "0.1", {"typo": "typo_plugin"}, {"typo_plugin": """
        from wake2vec import hookimpl

        @hookimpl
        def wake2vec_register_initialisers():
            return []
    """})
    result = cli("list-plugins")
    assert result.exit_code == 0
    assert "'wake2vec_register_initialisers' is not a wake2vec hook; did you mean " \
           "'wake2vec_register_initializers'?" in result.output
    assert "wake2vec-typo 0.1" in result.output


def test_plugin_command_hook_adds_a_command(cli, fake_dists):
    fake_dists.add("wake2vec-cmd", "0.1", {"cmd": "cmd_plugin"}, {"cmd_plugin": """
        import click
        from wake2vec import hookimpl

        @hookimpl
        def wake2vec_register_commands(cli):
            @cli.command(name="hello")
            def hello():
                '''Say hello from a plugin.'''
                click.echo("hello from a plugin")
    """})
    assert "hello" in cli("--help").output
    assert cli("hello").output.strip() == "hello from a plugin"


def test_unknown_name_lists_close_matches():
    from wake2vec.errors import UnknownNameError
    from wake2vec.registry import get_registry

    with pytest.raises(UnknownNameError) as info:
        get_registry().get("initializer", "spherikal")
    message = str(info.value)
    assert "did you mean 'spherical'?" in message
    assert "available: " in message and "mean" in message


@pytest.mark.parametrize("kind, hook, base", [
    ("model", "wake2vec_register_model_families", "ModelFamily"),
    ("injector", "wake2vec_register_injectors", "Injector"),
    ("initializer", "wake2vec_register_initializers", "Initializer"),
    ("phase", "wake2vec_register_phases", "PhaseStrategy"),
    ("regularizer", "wake2vec_register_regularizers", "Regularizer"),
    ("metric", "wake2vec_register_metrics", "Metric"),
])
def test_each_registration_hook_registers_with_provenance(fake_dists, kind, hook, base):
    fake_dists.add(f"wake2vec-extra-{kind}", "1.2.3", {f"extra-{kind}": f"extra_{kind}"}, {f"extra_{kind}": f"""
        from wake2vec import hookimpl
        from wake2vec.api import {base}

        class Extra({base}):
            '''An extra {kind} from a test distribution.'''
            name = "extra-{kind}"

        @hookimpl
        def {hook}():
            return [Extra]
    """})
    from wake2vec.registry import get_registry

    entry = get_registry().get(kind, f"extra-{kind}")
    assert entry.provenance.distribution == f"wake2vec-extra-{kind}"
    assert entry.provenance.version == "1.2.3"
    assert entry.description == f"An extra {kind} from a test distribution."


def test_registering_a_class_of_the_wrong_kind_is_refused(cli, fake_dists):
    fake_dists.add("wake2vec-wrong", "0.1", {"wrong": "wrong_plugin"}, {"wrong_plugin": """
        from wake2vec import hookimpl
        from wake2vec.api import Metric

        class NotAnInitializer(Metric):
            '''A metric pretending.'''
            name = "pretender"

        @hookimpl
        def wake2vec_register_initializers():
            return [NotAnInitializer]
    """})
    result = cli("list-plugins")
    assert result.exit_code == 1
    assert "plugin wrong (wake2vec-wrong 0.1) registered" in result.output
    assert "does not derive from Initializer" in result.output


@pytest.mark.slow
def test_third_party_plugin_runs_in_a_real_recipe(cli, fake_dists, monkeypatch, tmp_path):
    install_example(fake_dists, monkeypatch)
    recipe = write_recipe(tmp_path / "example.toml", """\
        # Run the example plugin's model family and initialiser: wake2vec run example.toml
        [run]
        name = "example-plugin"
        [model]
        family = "example-one-layer"
        [data]
        corpus = "@DATA@/demo_corpus.txt"
        lexicon = "@DATA@/demo_lexicon.txt"
        seq_len = 32
        [injection]
        initializer = { name = "example-noisy-mean", params = { noise = 0.2 } }
        [[phases]]
        strategy = "embed-only"
        steps = 3
        learning_rate = 1e-3
        [analysis]
        metrics = ["norms"]
    """)
    out = tmp_path / "run"
    result = cli("run", str(recipe), "--output-dir", str(out))
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["family"] == "example-one-layer"
    assert {"plugin": "example", "distribution": "wake2vec-example", "version": "0.1.0",
            "builtin": False} in manifest["plugins"]
    config = json.loads((out / "final" / "model" / "config.json").read_text())
    assert config["num_hidden_layers"] == 1
    injection = json.loads((out / "injection.json").read_text())
    assert injection["embedding"]["initializer"] == "example-noisy-mean"
