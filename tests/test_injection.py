"""The whole-word injector on SentencePiece-style and byte-level tokenizers, the injection
report, and applying an injection to a model's embedding matrices."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers_tokenizers import (
    ENGLISH,
    REAL_KINDS,
    build_tokenizer,
    load_real_tokenizer,
)
from wake2vec_plugins.injectors.whole_word import MARKER, WholeWord

from wake2vec.errors import TrainingError
from wake2vec.vocab.injection import apply_injection
from wake2vec.vocab.verify import verify_injection, whole_word_occurrences

# the studied models' own tokenizers, and one trained here for a layout no real file has
# (Metaspace splitting at every space, prefix on the first piece)
KINDS = [*REAL_KINDS, "spm"]
LEXICON = [
    "riverrun",
    "générations",
    "earwicker's",
    "brinabride",
    "ténèbres",
    "hore",
    "bri",
    "wher",
    "thos",
    "nig",
    "throug",
]
SHARED_LEXICON = Path(__file__).resolve().parents[2] / "shared" / "data" / "wake_lexicon.txt"


@pytest.fixture(scope="module", params=KINDS)
def kind_and_tokenizer(request, tmp_path_factory, real_tokenizer):
    kind = request.param
    if kind in REAL_KINDS:
        return kind, load_real_tokenizer(kind, real_tokenizer(REAL_KINDS[kind]))
    return kind, build_tokenizer(kind, tmp_path_factory.mktemp(kind))


@pytest.fixture(scope="module")
def injected(kind_and_tokenizer):
    kind, tok = kind_and_tokenizer
    return kind, tok, WholeWord(WholeWord.Params(skip_single_token=False)).inject(tok, LEXICON)


def new_ids_in(injection, ids):
    new = set(injection.ids)
    return [i for i in ids if i in new]


def encode(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


CONTEXTS = [
    ("start", "{w} and the river"),
    ("after space", "the river {w} and more"),
    ("after newline", "the river\n{w} ran"),
    ("after comma and space", "past Eve, {w}, and Adam"),
    ("after punctuation", "the end.{w}"),
    ("in parentheses", "a ({w}) b"),
    ("after double quote", 'she said "{w}" twice'),
    ("after single quote", "it was '{w}' then"),
    ("end of text", "by the {w}"),
    ("after tab", "a\t{w}"),
    ("after two spaces", "a  {w} b"),
]


@pytest.mark.parametrize("word", ["riverrun", "générations", "earwicker's"])
@pytest.mark.parametrize("context, template", CONTEXTS, ids=[c for c, _ in CONTEXTS])
def test_each_whole_word_is_exactly_one_new_id(injected, word, context, template):
    kind, base, injection = injected
    tok = injection.tokenizer
    text = template.format(w=word)
    ids = encode(tok, text)
    hits = new_ids_in(injection, ids)
    assert len(hits) == 1, (kind, text, tok.convert_ids_to_tokens(ids))
    assert injection.words[injection.ids.index(hits[0])] == word
    position = ids.index(hits[0])
    previous = tok.convert_ids_to_tokens(ids[position - 1]) if position > 0 else None
    if "  " not in text:  # no space left over as its own token in front of the new word
        assert previous not in ("▁", "Ġ", " "), tok.convert_ids_to_tokens(ids)
    assert tok.decode(ids) == text
    # everything else is encoded as the base tokenizer encodes it
    stripped = [i for i in ids if i not in set(injection.ids)]
    assert all(i < injection.base_vocab_size for i in stripped)


def test_two_forms_per_word_both_live(injected):
    kind, base, injection = injected
    tok = injection.tokenizer
    forms = dict(zip(injection.ids, injection.forms, strict=True))
    for word in ("riverrun", "générations"):
        at_start = new_ids_in(injection, encode(tok, word + " x"))
        after_space = new_ids_in(injection, encode(tok, "x " + word))
        assert forms[at_start[0]] == "bare" and forms[after_space[0]] == "space"
        # a lone space form decodes as a lone word-initial base token does in the injected
        # tokenizer (Llama's decoder strips a text's leading space; the legacy hub file would
        # have encoded that space as a "▁" of its own)
        lone = " " + word if tok.decode(encode(tok, " the")) == " the" else word
        assert tok.decode(at_start) == word and tok.decode(after_space) == lone
        assert tok.decode(encode(tok, "x " + word)) == "x " + word
    added = tok.backend_tokenizer.get_added_tokens_decoder()
    assert not any(
        added[i].content.startswith(("▁", "Ġ")) for i in injection.ids
    )  # no prefixed variants
    text = "\n".join(f"{w} and then {w}." for w in LEXICON)  # every form of every word is live
    assert verify_injection(base, tok, injection, text)["dead_tokens"]["count"] == 0


def test_fragments_never_fire_inside_other_words(injected):
    kind, base, injection = injected
    text = "where through night shore brings those"
    assert encode(injection.tokenizer, text) == encode(base, text)
    as_words = "wher throug nig hore bri thos"  # ... but they do fire as whole words
    assert len(new_ids_in(injection, encode(injection.tokenizer, as_words))) == 6


def test_round_trip_with_accented_words(injected):
    kind, base, injection = injected
    tok = injection.tokenizer
    text = "générations\n(ténèbres) générations, 'générations' ténèbres.\nEnd générations"
    ids = tok(text)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert tok.decode(new_ids_in(injection, encode(tok, "générations"))) == "générations"


def test_ordinary_text_and_special_tokens_unchanged(injected):
    kind, base, injection = injected
    for line in ENGLISH.splitlines():
        assert injection.tokenizer(line)["input_ids"] == base(line)["input_ids"]


def test_save_and_reload_behave_identically(injected, tmp_path):
    from transformers import AutoTokenizer

    kind, base, injection = injected
    injection.tokenizer.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    text = (
        ENGLISH
        + "\nriverrun, past générations\n(earwicker's) 'ténèbres' where through night shore brinabride"
    )
    assert len(again) == len(injection.tokenizer)
    assert again(text)["input_ids"] == injection.tokenizer(text)["input_ids"]
    assert again.decode(again(text)["input_ids"], skip_special_tokens=True) == text


def test_a_form_that_does_not_encode_to_its_id_is_an_error_naming_it(injected):
    """The form check reads forms fifty words at a time; a word whose id is wrong is found
    and named among the others."""
    from wake2vec_plugins.injectors.whole_word import _check_forms

    kind, base, injection = injected
    rows = list(zip(injection.ids, injection.words, injection.forms, strict=True))
    new = injection.tokenizer.backend_tokenizer
    _check_forms(new, rows, group=3)  # every form is right
    broken = [(i + 1 if w == "brinabride" and f == "bare" else i, w, f) for i, w, f in rows]
    with pytest.raises(TrainingError, match=r"1 forms do not encode.*brinabride"):
        _check_forms(new, broken, group=3)


def test_settings_made_after_loading_are_kept(kind_and_tokenizer):
    """A family gives a tokenizer without one a pad token after loading; the injected
    tokenizer keeps it, and the rest of the base's settings, through a save and reload."""
    import copy

    kind, tok = kind_and_tokenizer
    base = copy.deepcopy(tok)
    base.pad_token = base.eos_token
    base.padding_side = "left"
    injected = WholeWord().inject(base, ["riverrun"]).tokenizer
    for found in (injected, _saved_and_loaded(injected)):
        assert found.pad_token == base.eos_token and found.padding_side == "left", kind
        assert found.special_tokens_map == base.special_tokens_map
        assert found.chat_template == base.chat_template
        assert found.model_max_length == base.model_max_length


def _saved_and_loaded(tokenizer):
    import tempfile

    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        return AutoTokenizer.from_pretrained(tmp)


def test_single_token_words_are_skipped_with_a_reason(kind_and_tokenizer):
    kind, tok = kind_and_tokenizer
    # a base piece that is a vocabulary string but NOT one token in running text is injected
    vocab = tok.get_vocab()
    piece = next(
        t
        for t in sorted(vocab)
        if t.isalpha() and t.isascii() and len(t) >= 3 and len(encode(tok, " " + t)) > 1
    )
    injection = WholeWord().inject(tok, ["the", "river", piece, "riverrun"])
    skipped = dict(injection.skipped)
    assert set(skipped) == {"the", "river"} and "one token in running text" in skipped["the"]
    assert set(injection.words) == {piece, "riverrun"}
    kept = WholeWord(WholeWord.Params(skip_single_token=False)).inject(tok, ["the"])
    assert kept.words == ["the", "the"]
    assert len(new_ids_in(kept, encode(kept.tokenizer, "over the river"))) == 1


def test_rejects_short_and_invalid_entries(kind_and_tokenizer):
    kind, tok = kind_and_tokenizer
    injection = WholeWord(WholeWord.Params(min_length=4)).inject(
        tok, ["riverrun", "nig", "two words", "riverrun"]
    )
    assert dict(injection.rejected) == {
        "nig": "shorter than min_length 4",
        "two words": "contains whitespace (U+0020 SPACE)",
        "riverrun": "duplicate",
    }
    assert set(injection.words) == {"riverrun"}


def test_injected_tokenizer_can_be_injected_again(injected):
    kind, base, injection = injected
    second = WholeWord().inject(injection.tokenizer, ["riverrun", "annalividia"])
    assert dict(second.skipped)["riverrun"].startswith("already")
    text = "riverrun annalividia"
    assert len(new_ids_in(second, encode(second.tokenizer, text))) == 1
    assert second.tokenizer.decode(encode(second.tokenizer, text)) == text


# --------------------------------------------------------------------------- the report


def test_report_counts_coverage_spurious_dead_and_round_trip(injected):
    kind, base, injection = injected
    text = (
        "riverrun, past Eve and Adam's, from swerve of shore to bend of bay\n"
        "générations (earwicker's) where through night brings those\n"
        "the brinabride\n"
    )
    report = verify_injection(base, injection.tokenizer, injection, text)
    assert report["occurrences"]["total"] == 4 and report["coverage"] == 1.0
    assert report["spurious_hits"]["count"] == 0
    assert report["round_trip"]["exact"] and report["round_trip"]["differing_chars"] == 0
    # riverrun/générations bare, earwicker's bare, brinabride space; every other id is
    # never produced, and every other word is dead
    assert report["dead_tokens"]["ids"] == len(injection.ids) - 4
    assert report["dead_tokens"]["count"] == report["dead_tokens"]["words"] == len(LEXICON) - 4
    assert report["tokens_after"] < report["tokens_before"]
    assert report["added"]["count"] == len(LEXICON) and report["added"]["ids"] == 2 * len(LEXICON)
    assert report["added"]["trainable_rows"] == len(LEXICON)
    assert report["base_agreement"]["differing"] == 0


def test_report_catches_a_naive_injection(kind_and_tokenizer):
    """Plain added words fire inside other words: the report must say so."""
    import copy

    from wake2vec.api import Injection

    kind, tok = kind_and_tokenizer
    naive = copy.deepcopy(tok)
    naive.add_tokens(["hore", "bri"])
    ids = naive.convert_tokens_to_ids(["hore", "bri"])
    injection = Injection(tokenizer=naive, words=["hore", "bri"], ids=ids, base_vocab_size=len(tok))
    report = verify_injection(tok, naive, injection, "the shore brings\n")
    assert report["coverage"] is None
    if kind.endswith("-legacy"):  # its normalizer makes the added words "▁hore", "▁bri"
        assert report["spurious_hits"]["count"] == 1
        assert "'bri' in 'the shore brings'" in report["spurious_hits"]["sample"]
    else:
        assert report["spurious_hits"]["count"] == 2
        assert "'hore' in 'the shore brings'" in report["spurious_hits"]["sample"]


def test_the_quick_scan_finds_exactly_what_the_full_scan_finds():
    from wake2vec.testing import lexicon_text
    from wake2vec.vocab.verify import joiners

    lexicon = set(LEXICON) | {"phiz-à-phiz", "a-b", "'tis", "o'clock", "riverrun's"}
    text = lexicon_text(sorted(lexicon), 60_000, seed=3)
    text += "x a-b (b) earwicker's earwicker. 'tis phiz-à-phiz-x o'clock's riverrun's-\n"
    longest = max(map(len, lexicon))
    pattern = joiners(lexicon)
    assert pattern is not None and pattern.findall("a'b-c(d)") == ["'", "-"]
    found = 0
    for line in text.splitlines():
        full = whole_word_occurrences(line, lexicon, longest)
        assert whole_word_occurrences(line, lexicon, longest, pattern) == full, line
        found += len(full)
    assert found > 1000
    words_only = {"riverrun", "brinabride"}
    assert joiners(words_only) is None
    line = "(riverrun), brinabride's riverrun-"
    assert whole_word_occurrences(line, words_only, 10, None) == whole_word_occurrences(
        line, words_only, 10)


def test_whole_word_occurrences_leftmost_longest():
    lex = {"a-b", "b", "earwicker", "earwicker's", "nig"}
    line = "x a-b (b) earwicker's earwicker. night nig"
    found = [w for _, _, w in whole_word_occurrences(line, lex, 20)]
    assert found == ["a-b", "b", "earwicker's", "earwicker", "nig"]


# --------------------------------------------------------------------------- scale


def _big_lexicon() -> list[str]:
    if SHARED_LEXICON.is_file():
        from wake2vec.vocab.lexicon import load_lexicon

        return load_lexicon(SHARED_LEXICON).words
    import random

    rng = random.Random(0)
    letters = "abcdefghijklmnopqrstuvwxyzéèàù"
    return sorted(
        {"".join(rng.choice(letters) for _ in range(rng.randint(4, 12))) for _ in range(46000)}
    )[:45000]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["llama2", "qwen3"])
def test_the_whole_lexicon_over_a_book_sized_text_on_a_real_tokenizer(kind, real_tokenizer):
    """Every word of a 45,000-word lexicon becomes one id wherever it stands as a whole word
    in 1.5 MB of text that puts each word after a space and bare; nothing else changes."""
    from wake2vec.testing import english_text, lexicon_text

    base = load_real_tokenizer(kind, real_tokenizer(REAL_KINDS[kind]))
    words = _big_lexicon()
    injection = WholeWord().inject(base, words)  # timed in benchmarks/, not here
    assert len(set(injection.words)) + len(injection.skipped) == len(set(words))
    assert len(injection.row_ids()) == len(set(injection.words))  # one trainable row per word
    text = lexicon_text(sorted(set(injection.words)), 1_500_000)
    report = verify_injection(base, injection.tokenizer, injection, text)
    assert report["coverage"] == 1.0 and report["spurious_hits"]["count"] == 0
    assert report["round_trip"]["exact"] and report["dead_tokens"]["count"] == 0
    assert report["occurrences"]["total"] > 2 * len(set(injection.words))
    # text without lexicon words encodes exactly as before, line by line and as a whole
    lexicon, longest = set(injection.words), max(len(w) for w in injection.words)
    lines = [line for line in english_text(300_000, seed=5).splitlines()
             if not whole_word_occurrences(line, lexicon, longest)]
    assert len(lines) > 100
    plain = "\n".join(lines) + "\n"
    tok = injection.tokenizer
    assert tok(lines, add_special_tokens=False)["input_ids"] == base(
        lines, add_special_tokens=False)["input_ids"]
    assert encode(tok, plain) == encode(base, plain)
    assert tok.decode(encode(tok, plain)) == base.decode(encode(base, plain))


# --------------------------------------------------------------------------- applying to a model


def tiny_llama(vocab_size: int, tied: bool):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        tie_word_embeddings=tied,
    )
    return LlamaForCausalLM(config)


@pytest.fixture(scope="module")
def spm_injection(tmp_path_factory):
    tok = build_tokenizer("spm", tmp_path_factory.mktemp("spm-model"))
    return tok, WholeWord(WholeWord.Params(skip_single_token=False)).inject(tok, LEXICON)


def test_padding_rows_are_reused_and_initialised(spm_injection):
    import torch
    from wake2vec_plugins.initializers.basic import Mean

    tok, injection = spm_injection
    model = tiny_llama(len(tok) + 7, tied=False)
    before_in = model.get_input_embeddings().weight.detach().clone()
    before_out = model.get_output_embeddings().weight.detach().clone()
    base_ids = list(range(len(tok)))
    summary = apply_injection(
        model, injection, Mean(), base_ids=base_ids, morphology=None, seed=0, tied=False
    )
    weight = model.get_input_embeddings().weight.detach()
    assert summary["rows_before"] == len(tok) + 7
    assert summary["rows_after"] == weight.shape[0] == len(injection.tokenizer)
    assert summary["new_rows_on_former_padding"] == 7
    expected = before_in[: len(tok)].mean(dim=0)
    for (
        new_id
    ) in injection.ids:  # every live new id, padding rows included, holds its initial value
        torch.testing.assert_close(weight[new_id], expected)
    assert torch.equal(weight[: len(tok)], before_in[: len(tok)])
    head = model.get_output_embeddings().weight.detach()
    assert torch.equal(head[: len(tok)], before_out[: len(tok)])
    torch.testing.assert_close(head[injection.ids[0]], before_out[: len(tok)].mean(dim=0))


def test_untied_model_gets_new_head_rows_and_stays_untied(spm_injection):
    import torch
    from wake2vec_plugins.initializers.basic import Spherical

    tok, injection = spm_injection
    model = tiny_llama(len(tok), tied=False)
    before_out = model.get_output_embeddings().weight.detach().clone()
    summary = apply_injection(
        model,
        injection,
        Spherical(),
        base_ids=list(range(len(tok))),
        morphology=None,
        seed=3,
        tied=False,
    )
    head = model.get_output_embeddings().weight.detach()
    embed = model.get_input_embeddings().weight.detach()
    assert head.data_ptr() != embed.data_ptr() and not model.config.tie_word_embeddings
    assert torch.equal(head[: len(tok)], before_out)
    new = head[injection.ids]
    assert torch.isfinite(new).all() and (new.norm(dim=1) > 0).all()
    expected = 1.5 * before_out.std() * before_out.shape[1] ** 0.5
    torch.testing.assert_close(
        new.norm(dim=1), expected.expand(len(injection.ids)), rtol=1e-4, atol=1e-5
    )
    assert summary["output_rows_initialised"] and not summary["tied"]
    logits = model(torch.tensor([injection.ids[:4]])).logits
    assert logits.shape[-1] == len(injection.tokenizer)


def test_tied_model_stays_tied(spm_injection):
    from wake2vec_plugins.initializers.basic import Mean

    tok, injection = spm_injection
    model = tiny_llama(len(tok), tied=True)
    apply_injection(
        model, injection, Mean(), base_ids=list(range(len(tok))), morphology=None, seed=0, tied=True
    )
    assert (
        model.get_output_embeddings().weight.data_ptr()
        == model.get_input_embeddings().weight.data_ptr()
    )
    with pytest.raises(TrainingError, match="tie setting"):
        apply_injection(
            tiny_llama(len(tok), tied=True),
            injection,
            Mean(),
            base_ids=list(range(len(tok))),
            morphology=None,
            seed=0,
            tied=False,
        )


def test_both_forms_of_a_word_start_at_the_same_point(spm_injection):
    import torch
    from wake2vec_plugins.initializers.basic import Spherical

    tok, injection = spm_injection
    model = tiny_llama(len(tok), tied=True)
    apply_injection(
        model,
        injection,
        Spherical(),
        base_ids=list(range(len(tok))),
        morphology=None,
        seed=0,
        tied=True,
    )
    weight = model.get_input_embeddings().weight.detach()
    rows = {}
    for word, new_id in zip(injection.words, injection.ids, strict=True):
        rows.setdefault(word, []).append(weight[new_id])
    assert all(torch.equal(a, b) for a, b in rows.values())
    assert not torch.equal(rows["riverrun"][0], rows["hore"][0])


def test_marker_never_leaks_into_decoded_text(injected):
    kind, base, injection = injected
    tok = injection.tokenizer
    assert MARKER not in tok.decode(tok("riverrun générations x")["input_ids"])


def test_subword_mean_reads_the_base_tokenizer_recorded_by_the_injector(spm_injection):
    import torch
    from wake2vec_plugins.initializers.basic import SubwordMean

    tok, injection = spm_injection
    model = tiny_llama(len(tok), tied=True)
    before = model.get_input_embeddings().weight.detach().clone()
    apply_injection(
        model,
        injection,
        SubwordMean(),
        base_ids=list(range(len(tok))),
        morphology=None,
        seed=0,
        tied=True,
    )
    weight = model.get_input_embeddings().weight.detach()
    pieces = tok(" riverrun", add_special_tokens=False)["input_ids"]
    for new_id in new_ids_in(injection, encode(injection.tokenizer, "riverrun riverrun")):
        torch.testing.assert_close(weight[new_id], before[pieces].mean(dim=0))


def test_unsupported_pipelines_are_refused_not_silently_broken(tmp_path):
    import copy

    from tokenizers import normalizers

    from wake2vec.errors import UserInputError

    tok = build_tokenizer("spm", tmp_path)
    odd = copy.deepcopy(tok)
    odd.backend_tokenizer.normalizer = normalizers.Replace(" ", "__")
    with pytest.raises(UserInputError, match="turns a space into '__'"):
        WholeWord().inject(odd, ["riverrun"])
    with pytest.raises(UserInputError, match="fast"):
        WholeWord().inject(object(), ["riverrun"])


def test_new_ids_on_padding_rows_without_resizing(tmp_path):
    """Qwen-style: more rows than tokenizer entries, and a lexicon small enough to fit in them."""
    import torch
    from wake2vec_plugins.initializers.basic import Spherical

    tok = build_tokenizer("byte-level", tmp_path)
    injection = WholeWord(WholeWord.Params(skip_single_token=False)).inject(
        tok, ["riverrun", "hore"]
    )
    model = tiny_llama(len(tok) + 30, tied=True)
    padding_before = model.get_input_embeddings().weight.detach()[len(tok) :].clone()
    summary = apply_injection(
        model,
        injection,
        Spherical(),
        base_ids=list(range(len(tok))),
        morphology=None,
        seed=0,
        tied=True,
    )
    weight = model.get_input_embeddings().weight.detach()
    assert summary["rows_after"] == summary["rows_before"] == len(tok) + 30
    assert summary["new_rows_on_former_padding"] == 4
    for new_id in injection.ids:
        assert not torch.equal(weight[new_id], padding_before[new_id - len(tok)])
    assert torch.equal(weight[len(tok) + 4 :], padding_before[4:])  # unused padding rows untouched


def test_reload_beside_a_model_config_keeps_the_pipeline(injected, tmp_path):
    from transformers import Qwen2Config
    from wake2vec_plugins.injectors.whole_word import load_injected_tokenizer

    kind, base, injection = injected
    Qwen2Config().save_pretrained(tmp_path)  # transformers would force Qwen2Tokenizer here
    injection.tokenizer.save_pretrained(tmp_path)
    again = load_injected_tokenizer(tmp_path)
    text = "x riverrun (générations) riverrun, where shore"
    assert again(text)["input_ids"] == injection.tokenizer(text)["input_ids"]
