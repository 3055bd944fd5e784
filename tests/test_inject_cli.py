"""``wake2vec inject``: the injection report without training."""

from __future__ import annotations

import json
import re

from conftest import RECIPES


def test_inject_prints_the_report(cli, tmp_path):
    result = cli("inject", str(RECIPES / "three_phase.toml"), "--json", "--save", str(tmp_path / "tok"))
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["added"]["count"] == 480
    assert report["spurious_hits"]["count"] == 0
    assert report["round_trip"]["exact"] is True
    assert report["coverage"] == 1.0
    assert report["embedding"]["new_ids"] == 960  # a space form and a bare form per word
    assert (tmp_path / "tok" / "tokenizer.json").is_file()
    assert not (tmp_path / "runs").exists()


def test_inject_table_output(cli):
    result = cli("inject", str(RECIPES / "three_phase.toml"))
    assert result.exit_code == 0, result.output
    for key in ("added", "coverage", "spurious_hits", "dead_tokens", "round_trip"):
        assert re.search(rf"\b{key}: ", result.output), key
    assert re.search(r"\bcoverage: 1\.0$", result.output, re.M)
