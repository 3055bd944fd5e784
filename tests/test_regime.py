"""Regime labels of evaluations: improving, plateau, overfitting, fried."""

from __future__ import annotations

import pytest

from wake2vec.recipe.schema import REGIMES
from wake2vec.training.evaluate import regime


@pytest.mark.parametrize("previous, current, expected", [
    (None, {"val_loss": 5.0, "train_loss": 5.0}, "improving"),
    ({"val_loss": 5.0, "train_loss": 5.0}, {"val_loss": 4.9, "train_loss": 4.8}, "improving"),
    ({"val_loss": 5.0, "train_loss": 5.0}, {"val_loss": 5.001, "train_loss": 4.8}, "plateau"),
    ({"val_loss": 5.0, "train_loss": 5.0}, {"val_loss": 5.2, "train_loss": 4.6}, "overfitting"),
    ({"val_loss": 5.0, "train_loss": 5.0}, {"val_loss": 5.2, "train_loss": 5.0}, "overfitting"),
    ({"val_loss": 5.0, "train_loss": 5.0}, {"val_loss": 5.2, "train_loss": 5.5}, "fried"),
    # a training loss up by less than 1% is batch noise: validation alone rose
    ({"val_loss": 5.0, "train_loss": 5.0}, {"val_loss": 5.2, "train_loss": 5.03}, "overfitting"),
    # the first evaluation of a phase against the point it started from
    ({"val_loss": 4.0, "train_loss": 4.2}, {"val_loss": 4.3, "train_loss": 4.9}, "fried"),
    ({"val_loss": 4.0, "train_loss": None}, {"val_loss": 3.9, "train_loss": 4.0}, "improving"),
])
def test_regime_labels(previous, current, expected):
    assert regime(previous, current) == expected
    assert expected in REGIMES


def test_every_evaluation_in_a_run_is_labelled(tmp_path):
    import json

    from click.testing import CliRunner
    from conftest import RECIPES

    from wake2vec.cli import cli

    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", str(RECIPES / "three_phase.toml"), "--output-dir", str(out),
                                      "--set", "phases[0].steps=6", "--set", "phases[0].eval_every=2",
                                      "--set", "phases[0].warmup_steps=0", "--set", "phases[1].steps=2",
                                      "--set", "phases[1].warmup_steps=0", "--set", "phases[2].steps=2",
                                      "--set", "phases[2].warmup_steps=0"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "01-p1" / "history.jsonl").read_text().splitlines()]
    labels = [r["regime"] for r in rows if r["kind"] == "eval"]
    assert len(labels) == 3 and labels[0] == "improving" and set(labels) <= set(REGIMES)
