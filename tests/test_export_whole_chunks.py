"""``wake2vec export`` on vocabularies llama.cpp reads chunk by chunk: stand-ins with the real
Llama-3.2 tokenizer file (pre-tokenizer type ``llama-bpe``, for which llama.cpp takes a chunk
that is a vocabulary string whole before merging) and with the real Qwen file (type ``qwen2``,
which merges; ``--pre auto`` finds that ``llama-bpe`` tokenises its text, common English and a
probe of numbers and spacing exactly as ``qwen2`` does, and names it instead). A lexicon word
after a space is such a chunk, as is a bare one at a line start or after two marks, so each
enters as its string alone, with no merge that could fire inside a longer word. After a single
mark, which that pre-tokenizer glues to the word, a bare form is not reached: the export counts
those occurrences as missed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import built_once
from helpers_export import (
    differing_lines,
    export_stand_in,
    left_out,
    need_llama_cpp,
    new_id_gaps,
    new_ids,
    tokenizer_keys,
)

pytestmark = pytest.mark.slow

# stand-in, real tokenizer file, the base model's own pre-tokenizer type
VOCABULARIES = {"llama3": ("llama-3", "llama3_2", "llama-bpe"), "qwen": ("qwen2", "qwen3", "qwen2")}


@pytest.fixture(scope="module", params=sorted(VOCABULARIES))
def exported(request, tmp_path_factory, real_tokenizer) -> dict:
    """The run, its export (default options) and the base model's GGUF, built once per test
    session."""
    need_llama_cpp()
    name = request.param
    key, file, base_pre = VOCABULARIES[name]
    tokenizer = real_tokenizer(file)

    def build(root: Path) -> None:
        # after one mark a bare form is not reached (see the module's docstring)
        export_stand_in(root, key, tokenizer, name, "--min-coverage", "0.95")

    root = built_once(tmp_path_factory, f"{name}-export", build)
    report = json.loads((root / f"{name}.export.json").read_text(encoding="utf-8"))
    return {"run": root / "run", "gguf": root / f"{name}.gguf", "base": root / "base.gguf",
            "corpus": root / "corpus.txt", "report": report, "base_pre": base_pre,
            "keys": tokenizer_keys(root / f"{name}.gguf"), "added": new_ids(root / "run")}


def test_the_pre_tokenizer_is_one_llama_cpp_reads_chunk_by_chunk(exported):
    report = exported["report"]
    assert tokenizer_keys(exported["base"])["tokenizer.ggml.pre"] == exported["base_pre"]
    assert report["base_pre"] == exported["base_pre"]
    assert report["pre"] == exported["keys"]["tokenizer.ggml.pre"] == "llama-bpe"
    if exported["base_pre"] != "llama-bpe":
        assert "probe lines" in report["pre_why"]
        assert report["table"][0] == ["llama.cpp pre-tokenizer",
                                      f"llama-bpe (the base model's: {exported['base_pre']})"]


def test_the_words_enter_whole_with_no_merge(exported):
    """Each form's string alone makes it one id where it is a chunk of its own; not one merge
    or intermediate piece is added."""
    keys, added = exported["keys"], exported["added"]
    base = tokenizer_keys(exported["base"])
    assert keys["tokenizer.ggml.merges"] == base["tokenizer.ggml.merges"]
    forms = exported["report"]["forms"]
    assert forms["merges"] == forms["pieces"] == 0
    tokens = keys["tokenizer.ggml.tokens"]
    assert forms["whole-chunk"] + forms["user-defined"] + forms[""] == len(added)
    assert forms["whole-chunk"] > 0.8 * len(added)
    spaced = [tokens[i] for i in added if tokens[i].startswith("\u0120")]  # "Ġword"
    assert len(spaced) > 0.4 * len(added)


def _glued(line: str, word: str) -> bool:
    """``word`` stands in ``line`` right after one mark (the Llama-3 pre-tokenizer's chunk
    "(word" or "\"word"), not after a space, a letter or two marks."""
    for match in re.finditer(rf"(?<!\w){re.escape(word)}(?!\w)", line):
        before = line[max(0, match.start() - 2) : match.start()]
        if before[-1:] and not before[-1].isspace() and not before[-1].isalnum() and (
                len(before) < 2 or before[0].isspace() or before[0].isalnum()):
            return True
    return False


def test_every_lexicon_word_of_the_text_is_its_trained_id_unless_glued_to_a_mark(exported):
    """Every occurrence llama.cpp misses is a bare form right after a single mark, which the
    pre-tokenizer glues on; nothing else is missed, and nothing is spurious."""
    from tokenizers import Tokenizer

    report, added = exported["report"], exported["added"]
    assert report["forms"][""] == len(left_out(exported["keys"])) < len(added) / 100
    run_tokenizer = exported["run"] / "final" / "model" / "tokenizer.json"
    run_tok = Tokenizer.from_file(str(run_tokenizer))
    lines = exported["corpus"].read_text(encoding="utf-8").splitlines()
    total, gaps = new_id_gaps(run_tokenizer, exported["gguf"], lines, added)
    glued = 0
    for line, want, have in gaps:
        assert not have - want, line  # nothing spurious
        for i, n in (want - have).items():
            token = run_tok.id_to_token(i)
            assert token[0].isalpha(), (line, token)  # a bare form
            assert _glued(line, token.rstrip("\ufdd0")), (line, token)
            glued += n
    assert total > 1000
    assert report["occurrences"] == total and report["covered"] == total - glued
    assert report["spurious"] == 0


def test_text_without_lexicon_words_tokenises_as_the_base_gguf(exported):
    from wake2vec.testing import english_text

    lines = english_text(40_000, seed=9).splitlines() + [
        "The river ran past the church; don't, isn't, o'clock, 3.14 and 1,000!",
        "\"Quoted,\" she said (parenthesised)\twith a tab  and two spaces.",
    ]
    assert differing_lines(exported["gguf"], exported["base"], lines) == []
    assert exported["report"]["identical_to_base_share"] == 1.0
