"""The bpe-merges injector: lexicon words added to the BPE model's vocabulary and merges, on
SentencePiece-style and byte-level tokenizers; its segmentation-change report; applying it to
a model with padding rows."""

from __future__ import annotations

import json

import pytest
from helpers_tokenizers import ENGLISH, build_tokenizer
from wake2vec_plugins.injectors.bpe_merges import PIECE, BpeMerges, _apply, _simulated_chain
from wake2vec_plugins.injectors.whole_word import load_injected_tokenizer

from wake2vec.errors import UserInputError
from wake2vec.vocab.injection import apply_injection
from wake2vec.vocab.verify import verify_injection

KINDS = ["spm", "byte-level", "gemma-style", "qwen2-style"]
LEXICON = ["riverrun", "générations", "earwicker's", "brinabride", "ténèbres", "hore", "bri", "nig"]
ASCII_WORDS = ["riverrun", "brinabride", "nig"]  # the tiny SentencePiece vocabularies lack "é"


@pytest.fixture(scope="module", params=KINDS)
def injected(request, tmp_path_factory):
    tok = build_tokenizer(request.param, tmp_path_factory.mktemp(request.param))
    return request.param, tok, BpeMerges().inject(tok, LEXICON)


def encode(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def new_hits(injection, ids):
    new = dict(zip(injection.ids, zip(injection.words, injection.forms, strict=True), strict=True))
    return [new[i] for i in ids if i in new]


def words_for(kind):
    return ASCII_WORDS + (["générations", "ténèbres"] if "byte" in kind or "qwen" in kind else [])


@pytest.mark.parametrize("template", ["the river {w} and more", "{w} and the river", "by the {w}"])
def test_word_is_one_new_id_after_a_space_and_at_the_start(injected, template):
    kind, base, injection = injected
    tok = injection.tokenizer
    for word in words_for(kind):
        text = template.format(w=word)
        ids = encode(tok, text)
        hits = new_hits(injection, ids)
        assert len(hits) == 1 and hits[0][0] == word and hits[0][1] != PIECE, (
            kind,
            text,
            tok.convert_ids_to_tokens(ids),
        )
        assert tok.decode(ids) == text
        assert len(ids) < len(encode(base, text))


def test_accented_words_round_trip_on_byte_level(injected):
    kind, base, injection = injected
    tok = injection.tokenizer
    text = "générations\n(ténèbres) générations, riverrun 'générations' ténèbres.\nEnd générations"
    ids = tok(text)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == text
    if kind in ("byte-level", "qwen2-style"):
        (new_id,) = encode(tok, " générations")
        assert tok.decode([new_id]) == " générations"
        assert tok.convert_ids_to_tokens(new_id) == "ĠgÃ©nÃ©rations"  # the byte-level alphabet
    else:  # "é" is outside the tiny vocabulary: byte fallback pieces cannot be merged
        assert "byte fallback" in dict(injection.skipped)["générations"]


def test_ordinary_text_is_encoded_as_before(injected):
    kind, base, injection = injected
    for line in ENGLISH.splitlines():
        assert injection.tokenizer(line)["input_ids"] == base(line)["input_ids"]
    report = verify_injection(base, injection.tokenizer, injection, ENGLISH)
    assert report["segmentation_changes"] == {
        "count": 0,
        "distinct": 0,
        "runs_checked": len(ENGLISH.split()),
        "items": [],
    }


def test_report_lists_every_changed_base_segmentation(injected):
    kind, base, injection = injected
    text = "the riverrunning shore\nriverrun and riverrunning again, riverrun.\nthe brinabride"
    report = verify_injection(base, injection.tokenizer, injection, text)
    changes = report["segmentation_changes"]
    assert changes["count"] == 2 and changes["distinct"] == 1
    (item,) = changes["items"]
    assert item["word"] == "riverrunning" and item["count"] == 2
    prefix = "Ġ" if "byte" in kind or "qwen" in kind else "▁"
    assert item["after"] == [prefix + "riverrun", "ning"]
    assert item["before"] == base.convert_ids_to_tokens(encode(base, "a riverrunning"))[1:]
    assert report["spurious_hits"]["count"] == 2  # the same two occurrences, seen from the ids
    assert report["coverage"] == 1.0 and report["round_trip"]["exact"]


def test_coverage_is_reported_honestly_after_punctuation(injected):
    kind, base, injection = injected
    report = verify_injection(base, injection.tokenizer, injection, "a (riverrun) b\n")
    if kind == "spm":  # one pre-token per line: "▁(riverrun" holds no "▁riverrun" chain
        assert report["coverage"] == 0.0
        assert report["occurrences"]["uncovered_sample"] == ["a (riverrun) b"]
    else:  # byte-level starts a pre-token there; Gemma-style has a bare form
        assert report["coverage"] == 1.0


def test_pieces_are_listed_and_counted_where_they_fire(injected):
    kind, base, injection = injected
    pieces = [w for w, f in zip(injection.words, injection.forms, strict=True) if f == PIECE]
    assert injection.pipeline["pieces_added"] == len(pieces) > 0
    report = verify_injection(base, injection.tokenizer, injection, "a brinax\n")
    assert report["bpe_pieces"]["count"] == len(pieces)
    assert report["bpe_pieces"]["produced"] == 1  # "brina", an intermediate of "brinabride"
    assert report["segmentation_changes"]["items"][0]["word"] == "brinax"
    assert report["dead_tokens"]["count"] == report["added"]["count"]  # no lexicon word occurs
    assert report["dead_tokens"]["ids"] == report["added"]["ids"]


def test_ids_are_contiguous_after_the_vocabulary_and_added_tokens(injected):
    kind, base, injection = injected
    state = json.loads(base.backend_tokenizer.to_str())
    taken = set(state["model"]["vocab"].values()) | {t["id"] for t in state["added_tokens"]}
    first = max(taken) + 1
    assert first >= len(base)
    assert sorted(injection.ids) == list(range(first, first + len(injection.ids)))
    assert len(injection.tokenizer) == first + len(injection.ids)
    assert injection.tokenizer.convert_ids_to_tokens(first - 1) == base.convert_ids_to_tokens(
        first - 1
    )
    new = json.loads(injection.tokenizer.backend_tokenizer.to_str())["model"]
    base_merges = state["model"]["merges"]
    assert new["merges"][: len(base_merges)] == base_merges  # new merges only at the end
    assert len(new["merges"]) == len(base_merges) + injection.pipeline["merges_added"]


def test_skips_single_tokens_and_unbuildable_words_with_reasons(injected):
    kind, base, injection = injected
    second = BpeMerges().inject(base, ["the", "river", "riverrun", "earwicker's"])
    skipped = dict(second.skipped)
    assert "one token in running text" in skipped["the"]
    assert "one token in running text" in skipped["river"]
    if kind in ("byte-level", "qwen2-style"):
        assert "pre-tokenizer splits it" in skipped["earwicker's"]
    assert {w for w, f in zip(second.words, second.forms, strict=True) if f != PIECE} == {
        "riverrun"
    }
    rejected = BpeMerges(BpeMerges.Params(min_length=4)).inject(base, ["nig", "a b", "nig"])
    assert dict(rejected.rejected) == {
        "nig": "shorter than min_length 4",
        "a b": "contains whitespace (U+0020 SPACE)",
    }


def test_save_and_reload_behave_identically(injected, tmp_path):
    from transformers import AutoTokenizer

    kind, base, injection = injected
    injection.tokenizer.save_pretrained(tmp_path)
    text = ENGLISH + "\nriverrun, past générations\n(brinabride) riverrunning a brinax nig"
    expected = injection.tokenizer(text)["input_ids"]
    for again in (AutoTokenizer.from_pretrained(tmp_path), load_injected_tokenizer(tmp_path)):
        assert len(again) == len(injection.tokenizer)
        assert again(text)["input_ids"] == expected
        assert again.decode(expected, skip_special_tokens=True) == text
    assert expected[0] == base(text)["input_ids"][0]  # the base's special tokens (Llama BOS)


def test_registered_under_its_name():
    from wake2vec.registry import get_registry

    entry = get_registry().get("injector", "bpe-merges")
    assert entry.impl is BpeMerges
    assert entry.impl.__doc__.startswith("Adds each word to the BPE model's vocabulary")


def test_rejects_a_tokenizer_without_a_bpe_model(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]")
    with pytest.raises(UserInputError, match="BPE model"):
        BpeMerges().inject(tok, ["riverrun"])


def test_chain_is_simulated_so_repeated_pieces_still_join():
    # a merge joins every occurrence of its pair: a naive chain (s,hin),(shin,s),(shins,hin)
    # would stop at "shin shin"
    assert _simulated_chain(["s", "hin", "s", "hin"], {}.get, 0) == [("s", "hin"), ("shin", "shin")]
    ranks = {("xa", "b"): 0}  # a base merge that applies once the new intermediate exists
    assert _simulated_chain(["x", "a", "b"], ranks.get, 1) == [("x", "a")]
    assert _apply(["x", "a", "b"], lambda p: ranks.get(p, {("x", "a"): 1}.get(p))) == ["xab"]


def test_repeated_pieces_word_is_one_id(tmp_path):
    tok = build_tokenizer("byte-level", tmp_path)
    injection = BpeMerges().inject(tok, ["shinshin", "thinthin"])  # "shin" is no lexicon word
    assert injection.skipped == []
    for text, words in (("a shinshin thinthin", ["shinshin", "thinthin"]),
                        ("shinshin", ["shinshin"])):
        hits = new_hits(injection, encode(injection.tokenizer, text))
        assert [w for w, _ in hits] == words


# --------------------------------------------------------------------------- applying to a model


@pytest.fixture(scope="module")
def spm_injection(tmp_path_factory):
    tok = build_tokenizer("spm", tmp_path_factory.mktemp("spm-bpe-model"))
    return tok, BpeMerges().inject(tok, LEXICON)


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


def test_padding_rows_hold_only_initialised_new_ids_and_base_rows_stay(spm_injection):
    import torch
    from wake2vec_plugins.initializers.basic import Mean

    tok, injection = spm_injection
    model = tiny_llama(len(tok) + 7, tied=False)
    before_in = model.get_input_embeddings().weight.detach().clone()
    before_out = model.get_output_embeddings().weight.detach().clone()
    summary = apply_injection(
        model, injection, Mean(), base_ids=list(range(len(tok))), morphology=None, seed=0, tied=False
    )
    embed = model.get_input_embeddings().weight.detach()
    head = model.get_output_embeddings().weight.detach()
    assert summary["new_rows_on_former_padding"] == 7 and not summary["tied"]
    assert embed.shape[0] == len(injection.tokenizer) == len(tok) + len(injection.ids)
    assert head.data_ptr() != embed.data_ptr()
    assert torch.equal(embed[: len(tok)], before_in[: len(tok)])
    assert torch.equal(head[: len(tok)], before_out[: len(tok)])  # untied head: bit-identical
    # every id the injected tokenizer can produce beyond the base vocabulary (word forms and
    # pieces alike) sits on an initialised row, padding rows included
    beyond = range(len(tok), len(injection.tokenizer))
    assert sorted(injection.ids) == list(beyond)
    for new_id in beyond:
        torch.testing.assert_close(embed[new_id], before_in[: len(tok)].mean(dim=0))
        torch.testing.assert_close(head[new_id], before_out[: len(tok)].mean(dim=0))
    live = encode(injection.tokenizer, "riverrun a brinax")
    assert max(live) >= len(tok) and all(i in set(injection.ids) or i < len(tok) for i in live)


def test_tied_model_stays_tied(spm_injection):
    from wake2vec_plugins.initializers.basic import Mean

    tok, injection = spm_injection
    model = tiny_llama(len(tok), tied=True)
    apply_injection(
        model, injection, Mean(), base_ids=list(range(len(tok))), morphology=None, seed=0, tied=True
    )
    embed = model.get_input_embeddings().weight
    assert model.get_output_embeddings().weight.data_ptr() == embed.data_ptr()
    assert embed.shape[0] == len(injection.tokenizer)
