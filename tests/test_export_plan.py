"""The GGUF export's planning, without llama.cpp: the base tokenizer recovered from a run's,
chains simulated under each vocabulary's merge rule, the least risky chain shape, forms left
out by risk, and the measurement's counting."""

from __future__ import annotations

from wake2vec.export.llama_gguf import MARKER, _english, read_forms, scores_from_merges
from wake2vec.export.measure import measure
from wake2vec.export.plan import (
    BARE,
    MERGES,
    SPACE,
    USER_DEFINED,
    WHOLE,
    Form,
    Plan,
    Risk,
    VocabFacts,
    _join,
    _tree,
    choose,
    plan_forms,
)


def _bpe(tokens: list[str], merges: list[str]) -> VocabFacts:
    return VocabFacts("gpt2", tokens, [1] * len(tokens), [], merges)


def test_the_base_tokenizer_is_the_run_s_without_the_whole_word_steps():
    base_pre = {"type": "ByteLevel", "add_prefix_space": False}
    state = {
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFC"},
            {"type": "Replace", "pattern": {"String": MARKER}, "content": ""}]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"String": MARKER}}, base_pre]},
        "decoder": {"type": "Replace", "pattern": {"String": MARKER}, "content": ""},
        "added_tokens": [
            {"id": 0, "content": "<s>", "special": True},
            {"id": 5, "content": " riverrun" + MARKER, "special": False},
            {"id": 6, "content": "riverrun" + MARKER, "special": False},
            {"id": 7, "content": "\u2581howth" + MARKER, "special": False},
        ],
    }
    forms, base = read_forms(state)
    assert [(f.word, f.form, f.id) for f in forms] == [
        ("riverrun", SPACE, 5), ("riverrun", BARE, 6), ("howth", SPACE, 7)]
    assert base["normalizer"] == {"type": "NFC"}
    assert base["pre_tokenizer"] == base_pre
    assert base["decoder"] is None
    assert [t["content"] for t in base["added_tokens"]] == ["<s>"]


def test_bpe_joins_by_rank_and_sentencepiece_by_score():
    ranks = {("a", "b"): 0, ("b", "c"): 1}
    assert _join(["a", "b", "c"], lambda x, y: ranks.get((x, y))) == ["ab", "c"]
    scores = {"bc": -1.0, "ab": -2.0}  # SentencePiece: the higher score first
    best = lambda x, y: -scores[x + y] if x + y in scores else None  # noqa: E731
    assert _join(["a", "b", "c"], best) == ["a", "bc"]


def test_uniform_sentencepiece_scores_are_rebuilt_from_the_merges_in_their_order():
    tokens = ["<unk>", "<0x0A>", "\u2581", "t", "h", "e", "th", "\u2581the", "he", "\u2581t"]
    facts = VocabFacts("llama", tokens, [1] * len(tokens), [-1000.0] * len(tokens), [])
    state = {"model": {"type": "BPE", "merges": [["t", "h"], "h e", "\u2581 t", "\u2581t he",
                                                 "\u2581 th"]}}
    scores = scores_from_merges(facts, state)
    assert dict(zip(tokens, scores, strict=True)) == {
        "<unk>": -5.0, "<0x0A>": -5.0, "\u2581": -5.0, "t": -5.0, "h": -5.0, "e": -5.0,
        "th": -0.0, "he": -1.0, "\u2581t": -2.0, "\u2581the": -3.0}  # the first merge's rank
    rebuilt = VocabFacts("llama", tokens, facts.types, scores, [])
    assert scores_from_merges(rebuilt, state) is None  # scores of its own are kept
    assert scores_from_merges(facts, {"model": {"type": "Unigram"}}) is None
    assert scores_from_merges(_bpe(tokens, ["t h"]), state) is None  # byte-level BPE


def test_the_risk_probe_holds_contractions():
    """Real English is full of "don't" and "doesn't": a chain's piece "'t" would fire in each."""
    words = dict(_english())
    assert words["don't"] > words["Don't"] > 0
    assert words["doesn't"] > 0 and words["the"] > words["don't"]
    assert "don't's" not in words and "'s" not in words


class _Risk:
    """Runs of ids that stand in ordinary words, with their frequency."""

    def __init__(self, runs: dict[tuple[int, ...], float], endings: dict[str, float] | None = None):
        self.runs, self.endings = runs, endings or {}

    def run(self, ids):
        return self.runs.get(ids, 0.0)

    def inside(self, ids):
        return self.runs.get(ids, 0.0)

    def ending(self, head, rest):
        return self.endings.get(head, 0.0)


def test_the_chain_avoids_intermediates_that_are_common_words():
    # cous in but ter: "cousin" and "butter" are words, "inbut" is not
    strings = ["Ġcous", "in", "but", "ter"]
    risk = _Risk({(0, 1): 1e-4, (2, 3): 1e-4})
    nodes, cost = _tree([0, 1, 2, 3], strings, risk)
    assert cost == 0.0
    assert "Ġcousin" not in nodes and "butter" not in nodes
    assert nodes["Ġcousinbutter"] == 4
    left_to_right, _ = _tree([0, 1, 2, 3], strings, None)
    assert "Ġcousin" in left_to_right


def test_planned_chains_build_each_form_and_number_their_pieces_after_the_rows():
    tokens = ["Ġ", "Ġcous", "in", "but", "ter", "Ġriver", "run"]
    facts = _bpe(tokens, ["Ġ cous"])
    forms = [Form("cousinbutter", SPACE, 10, pieces=[1, 2, 3, 4], text="Ġcousinbutter"),
             Form("riverrun", SPACE, 11, pieces=[5, 6], text="Ġriverrun")]
    plan = plan_forms(facts, forms, first_piece_id=20, risk=_Risk({(1, 2): 1.0, (3, 4): 1.0}))
    assert [f.how for f in forms] == [MERGES, MERGES]
    assert plan.strings["Ġcousinbutter"] == 10 and plan.strings["Ġriverrun"] == 11
    assert sorted(plan.pieces) == [20, 21]  # a four-piece chain needs two intermediates
    ranks = {tuple(m.split(" ")): r for r, m in enumerate(facts.merges + plan.merges)}
    for f in forms:
        got = _join([tokens[p] for p in f.pieces], lambda a, b: ranks.get((a, b)))
        assert got == [f.text]
    for piece, joins in plan.pieces.items():  # each piece's row is the mean of these
        text = next(t for t, i in plan.strings.items() if i == piece)
        assert "".join(tokens[j] for j in joins) == text


def test_risky_forms_are_left_out_with_the_reason():
    facts = _bpe(["Ġd", "av", "Ġriver", "run"], [])
    dav = Form("dav", SPACE, 10, pieces=[0, 1], text="Ġdav")  # fires inside "davis"
    river = Form("riverrun", SPACE, 11, pieces=[2, 3], text="Ġriverrun")
    clitic = Form("r's", BARE, 12, how=USER_DEFINED)  # inside "founter's"
    kept = choose(facts, [dav, river, clitic], _Risk({(0, 1): 3e-5}, {"r": 0.2}), 1e-5)
    assert kept == 0.0
    assert "fire in ordinary words" in dav.reason and river.reason == ""
    assert clitic.how == "" and "inside other words" in clitic.reason


def test_where_llama_cpp_takes_whole_chunks_a_form_needs_no_merge():
    tokens = ["Ġd", "av", "d", "Ġriver", "run", "river"]
    risk = _Risk({(0, 1): 3e-5, (2, 1): 3e-5})  # "Ġdav" / "dav" fire inside "davis"

    def forms() -> list[Form]:
        return [Form("dav", SPACE, 10, pieces=[0, 1], text="Ġdav"),
                Form("dav", BARE, 11, pieces=[2, 1], text="dav"),
                Form("riverrun", SPACE, 12, pieces=[3, 4], text="Ġriverrun"),
                Form("riverrun", BARE, 13, pieces=[5, 4], text="riverrun")]

    # Llama-3's merges join a mark to the letters after it ("(in"): whole strings only
    llama3 = VocabFacts("gpt2", tokens, [1] * len(tokens), [], ["( d"], pre="llama-bpe")
    assert llama3.whole_chunks and not llama3.glued_chains
    planned = forms()
    assert choose(llama3, planned, risk, 1e-5) == 0.0
    plan = plan_forms(llama3, planned, first_piece_id=20, risk=risk)
    assert [f.how for f in planned] == [WHOLE] * 4  # "dav" too: no merge fires in "davis"
    assert plan.merges == [] and plan.pieces == {}
    assert plan.strings == {"Ġdav": 10, "dav": 11, "Ġriverrun": 12, "riverrun": 13}
    # a vocabulary whose merges keep marks apart (SmolLM2's, named llama-bpe): a bare form
    # also gets its chain, where it is safe, for "(riverrun", which is merged, not looked up
    apart = VocabFacts("gpt2", tokens, [1] * len(tokens), [], [], pre="llama-bpe")
    assert apart.glued_chains
    planned = forms()
    assert choose(apart, planned, risk, 1e-5) == 0.0
    plan = plan_forms(apart, planned, first_piece_id=20, risk=risk)
    assert [f.how for f in planned] == [WHOLE, WHOLE, WHOLE, MERGES]
    assert plan.merges == ["river run"]
    assert plan.strings == {"Ġdav": 10, "dav": 11, "Ġriverrun": 12, "riverrun": 13}
    # the same vocabulary read with merges only (SmolLM2's, Qwen2's pre-tokenizer types)
    smollm = VocabFacts("gpt2", tokens, [1] * len(tokens), [], [], pre="smollm")
    assert not smollm.whole_chunks
    planned = forms()
    choose(smollm, planned, risk, 1e-5)
    plan = plan_forms(smollm, planned, first_piece_id=20, risk=risk)
    assert [f.how for f in planned] == ["", "", MERGES, MERGES]
    assert sorted(plan.merges) == ["river run", "Ġriver run"]


def test_where_llama_cpp_takes_whole_chunks_the_risk_probe_tokenises_nothing():
    """No join is added there, so the probe needs no tokenizer; a bare user-defined token is
    still judged by how often ordinary words end in the letters it starts with."""
    risk = Risk(None, {}, [("founter", 1e-3), ("davis", 1e-3)])
    assert not risk.whole and not risk.within
    tokens = ["Ġd", "av", "d"]
    llama3 = VocabFacts("gpt2", tokens, [1] * len(tokens), [], [], pre="llama-bpe")
    dav = Form("dav", SPACE, 10, pieces=[0, 1], text="Ġdav")
    clitic = Form("r's", BARE, 11, how=USER_DEFINED)  # inside "founter's"
    odd = Form("z'x", BARE, 12, how=USER_DEFINED)  # no word ends in "z"
    assert choose(llama3, [dav, clitic, odd], risk, 1e-6) == 0.0
    assert dav.how == WHOLE and odd.how == USER_DEFINED
    assert clitic.how == "" and "inside other words" in clitic.reason


def test_measure_counts_coverage_spurious_ids_and_lines_like_the_base():
    forms = [Form("riverrun", SPACE, 100, how=MERGES), Form("howth", SPACE, 101, how=MERGES)]
    plan = Plan(forms=forms, pieces={200: [1, 2]})
    lines = ["riverrun past howth", "plain words", "more plain words", "howth again"]
    run = {"riverrun past howth": [100, 3, 101], "plain words": [4, 5],
           "more plain words": [6, 4, 5], "howth again": [101, 7]}
    exported = {"riverrun past howth": [100, 3, 8, 9], "plain words": [4, 5],
                "more plain words": [6, 200, 5], "howth again": [101, 7]}
    base = {"plain words": [4, 5], "more plain words": [6, 4, 5]}
    result = measure(lines, lambda batch: [run[x.lstrip("\n")] for x in batch],
                     lambda x: exported[x.lstrip("\n")], lambda x: base[x.lstrip("\n")],
                     plan, {100, 101})
    assert (result["occurrences"], result["covered"]) == (3, 2)
    assert result["missed_sample"] == ["howth x1"]
    assert result["spurious"] == 1 and result["spurious_by_cause"]["piece"]["count"] == 1
    assert (result["lines_without_lexicon_words"], result["identical_to_base"]) == (2, 1)
    assert result["words"] == 10
