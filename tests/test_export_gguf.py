"""``wake2vec export RUN --gguf OUT.gguf`` on a SentencePiece vocabulary: a stand-in with the
real Llama-2 tokenizer file (llama.cpp's ``llama`` vocabulary type) taught the demo lexicon,
exported with llama.cpp's own converter and checked in llama.cpp (llama-cpp-python): every
lexicon word of the text is its trained id, text without lexicon words tokenises as the base
model's GGUF does. The byte-level case runs on the real SmolLM2 weights in
``test_real_model.py``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import built_once
from helpers_export import (
    differing_lines,
    export_stand_in,
    left_out,
    lines_unlike_transformers,
    need_llama_cpp,
    new_id_gaps,
    new_ids,
    tokenizer_keys,
)

pytestmark = pytest.mark.slow

ENGLISH = [
    "The river ran past the church, and the shore came back to the bay.",
    "\"Quoted,\" she said; (parenthesised) words: don't, isn't, o'clock and 3.14!",
    "Naive cafe, senor, deja vu.  Two spaces, a tab\there and the end.",
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, real_tokenizer) -> dict:
    """The run and its export, built once per test session (the xdist workers share them)."""
    need_llama_cpp()
    tokenizer = real_tokenizer("llama2")

    def build(root: Path) -> None:
        output = export_stand_in(root, "llama", tokenizer, "llama2")
        (root / "output.txt").write_text(output, encoding="utf-8")

    root = built_once(tmp_path_factory, "llama2-export", build)
    return {"run": root / "run", "gguf": root / "llama2.gguf", "base": root / "base.gguf",
            "base_tokenizer": root / "base" / "tokenizer.json",
            "corpus": root / "corpus.txt",
            "output": (root / "output.txt").read_text(encoding="utf-8")}


def test_every_lexicon_word_of_the_text_is_its_trained_id_in_llama_cpp(exported):
    """Every form the export keeps; with the Llama-2 scores a few forms ("nigher": its joins
    would also fire in "nigel") are left out under the default --risk-limit, and the report
    counts them."""
    added, dropped = new_ids(exported["run"]), left_out(tokenizer_keys(exported["gguf"]))
    report = json.loads(exported["gguf"].with_name("llama2.export.json").read_text("utf-8"))
    assert len(dropped) == report["forms"][""] < len(added) / 100
    lines = exported["corpus"].read_text(encoding="utf-8").splitlines()
    total, gaps = new_id_gaps(exported["run"] / "final" / "model" / "tokenizer.json",
                              exported["gguf"], lines, added - dropped)
    assert total > 1000
    assert gaps == []


def test_text_without_lexicon_words_tokenises_as_the_base_model_does(exported):
    """As the base ``tokenizer.json`` does in transformers (the hub's base GGUF, converted
    from ``tokenizer.model``'s scores, agrees with it). A folder with only ``tokenizer.json``
    (a transformers 5 save, this stand-in) gives llama.cpp's converter no scores: every
    piece gets the same one and most lines come out otherwise; the export rebuilds the scores
    from the merges."""
    from wake2vec.testing import english_text

    lines = ENGLISH + english_text(30_000, seed=9).splitlines()
    assert lines_unlike_transformers(exported["gguf"], exported["base_tokenizer"], lines) == []
    plain = differing_lines(exported["base"], exported["gguf"], lines)
    assert len(plain) > len(lines) / 2  # the converter's own output, without the rebuilt scores


def test_the_export_prints_and_writes_its_table(exported):
    report = json.loads(exported["gguf"].with_name("llama2.export.json").read_text("utf-8"))
    assert report["vocabulary"] == "llama"
    assert report["coverage"] >= 0.99
    assert report["identical_to_base_share"] == 1.0
    assert "lexicon occurrences covered" in exported["output"]


def test_below_the_coverage_asked_for_nothing_is_written(exported, tmp_path):
    from click.testing import CliRunner
    from tokenizers import Tokenizer

    from wake2vec.cli import cli

    # a text of the words the export leaves out: none of them gets its trained id
    run_tok = Tokenizer.from_file(str(exported["run"] / "final" / "model" / "tokenizer.json"))
    dropped = left_out(tokenizer_keys(exported["gguf"]))
    words = {run_tok.id_to_token(i).strip(" \u2581\ufdd0") for i in dropped}
    assert words
    text = tmp_path / "text.txt"
    text.write_text("".join(f"and {w} went\n" for w in sorted(words)), encoding="utf-8")
    out = tmp_path / "refused.gguf"
    result = CliRunner().invoke(cli, ["export", str(exported["run"]), "--gguf", str(out),
                                      "--text", str(text)])
    assert result.exit_code == 2, result.output
    assert "below --min-coverage 0.99" in result.output
    assert "lexicon occurrences covered" in result.output  # the table, before the refusal
    assert not out.exists()
    report = json.loads((tmp_path / "refused.export.json").read_text(encoding="utf-8"))
    assert report["coverage"] == 0.0


def test_a_byte_level_pre_tokenizer_is_refused_for_sentencepiece(exported, tmp_path):
    from click.testing import CliRunner

    from wake2vec.cli import cli

    out = tmp_path / "refused.gguf"
    result = CliRunner().invoke(cli, ["export", str(exported["run"]), "--gguf", str(out),
                                      "--pre", "llama-bpe"])
    assert result.exit_code == 2, result.output
    assert "SentencePiece" in result.output and "--pre llama-bpe" in result.output
    assert not out.exists() and list(tmp_path.iterdir()) == []
    report = json.loads(exported["gguf"].with_name("llama2.export.json").read_text("utf-8"))
    assert report["pre"] == report["base_pre"] and "the base model's" in report["pre_why"]
