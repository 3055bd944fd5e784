"""Synthetic forms (weighted morpheme draws) and template sentences that use every word."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from wake2vec.vocab.morphology import Morphology
from wake2vec.vocab.synthetic import POSITIONS, TEMPLATES, synthetic_forms, synthetic_sentences

ROOTS = [f"root{chr(97 + i)}{chr(97 + j)}" for i in range(26) for j in range(26)]  # 676 roots


def morphology() -> Morphology:
    return Morphology(
        prefixes={"re": [f"re{i}" for i in range(9)], "un": ["undo"]},  # weights 9 : 1
        suffixes={"ful": ["hopeful", "playful", "useful"], "ly": []},  # weights 3 : 1 (no examples -> 1)
    )


def _split(form: str) -> tuple[str, str]:
    prefix = next(p for p in ("re", "un") if form.startswith(p))
    suffix = next(s for s in ("ful", "ly") if form.endswith(s))
    return prefix, suffix


def test_forms_are_prefix_root_suffix_and_deterministic():
    forms = synthetic_forms(morphology(), ROOTS, 200, seed=7)
    assert len(forms) == 200 and len(set(forms)) == 200
    for form in forms:
        assert re.fullmatch(r"(re|un)root[a-z]{2}(ful|ly)", form), form
    assert forms == synthetic_forms(morphology(), ROOTS, 200, seed=7)
    assert forms != synthetic_forms(morphology(), ROOTS, 200, seed=8)


def test_morphemes_are_drawn_by_example_count():
    forms = synthetic_forms(morphology(), ROOTS, 4000, seed=1, unique=False)
    prefixes = Counter(_split(f)[0] for f in forms)
    suffixes = Counter(_split(f)[1] for f in forms)
    # expected shares 0.9 and 0.75; 4000 draws put the standard error near 0.005 and 0.007
    assert prefixes["re"] / len(forms) == pytest.approx(0.9, abs=0.025)
    assert suffixes["ful"] / len(forms) == pytest.approx(0.75, abs=0.03)
    # and uniform weights would be visibly different
    assert prefixes["un"] / len(forms) < 0.2


def test_forms_stop_when_the_combinations_run_out():
    small = Morphology(prefixes={"re": ["redo"]}, suffixes={"ly": ["lovely"]})
    assert sorted(synthetic_forms(small, ["Wake", "shem"], 10, seed=0)) == ["reshemly", "rewakely"]
    with pytest.raises(ValueError):
        synthetic_forms(small, [], 3, seed=0)


WORDS = ["riverrun", "générations", "o'wetnarrow", "fall-gardeepy", "thunderword", "shemmy", "wakeisland"]


def test_sentences_contain_every_word_in_every_position():
    sentences = synthetic_sentences(WORDS, seed=3, per_word=4)
    assert len(sentences) == 4 * len(WORDS)
    for word in WORDS:
        mine = [s for s in sentences if re.search(rf"(?<![\w'-]){re.escape(word)}(?![\w'-])", s)]
        assert len(mine) == 4, word
        assert any(s.startswith(word) for s in mine)  # start of a sentence, not re-cased
        assert any(f", {word}" in s for s in mine)  # after a comma
        assert any(f'"{word}' in s for s in mine)  # in quotes
        assert any(f" {word} " in s for s in mine)  # mid-sentence


def test_sentences_once_per_word_are_deterministic_and_varied():
    sentences = synthetic_sentences(WORDS, seed=3)
    assert len(sentences) == len(WORDS)
    assert all(any(word in s for s in sentences) for word in WORDS)
    assert sentences == synthetic_sentences(WORDS, seed=3)
    assert sentences != synthetic_sentences(WORDS, seed=4)
    templates = {s.replace(w, "{w}") for s in sentences for w in WORDS if w in s}
    assert len(templates) >= 4
    assert set(POSITIONS) == set(TEMPLATES)
    assert synthetic_sentences([], seed=0) == []
