"""Corpus reading, the text-level validation split, token blocks and bits per byte."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers_training import corpus_text, data_spec, tiny_model, train_tokenizer

from wake2vec.errors import DataError
from wake2vec.training.data import prepare_data, split_span, split_text
from wake2vec.training.evaluate import evaluate
from wake2vec.vocab.files import read_corpus

# --------------------------------------------------------------------------- read_corpus


def test_missing_corpus_is_named(tmp_path):
    with pytest.raises(DataError, match=r"nowhere\.txt.*not found"):
        read_corpus(tmp_path / "nowhere.txt")


def test_empty_corpus_is_named(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("  \n\n")
    with pytest.raises(DataError, match=r"empty\.txt.*empty"):
        read_corpus(path)


def test_binary_corpus_is_refused(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"abc\x00\x01\x02def")
    with pytest.raises(DataError, match=r"model\.bin.*binary"):
        read_corpus(path)


def test_undecodable_corpus_names_line_offset_and_recipe_option(tmp_path):
    path = tmp_path / "wake.txt"
    path.write_bytes("riverrun\npast Eve\nand Ad\xe9m".encode("latin-1"))
    with pytest.raises(DataError) as info:
        read_corpus(path)
    message = str(info.value)
    assert "wake.txt" in message and "line 3" in message and "byte offset 24" in message
    assert "data.encoding" in message
    assert read_corpus(path, "latin-1").endswith("Adém")


def test_line_ends_and_unicode_are_normalised(tmp_path):
    path = tmp_path / "c.txt"
    path.write_bytes("\ufeffone\r\ntwo\rthree Ade\u0301m\n".encode())
    assert read_corpus(path) == "one\ntwo\nthree Ad\u00e9m\n"


# --------------------------------------------------------------------------- split


def test_split_is_contiguous_disjoint_and_on_paragraph_boundaries():
    text = corpus_text(60)
    start, end = split_span(text, 0.1, seed=3)
    train, val = split_text(text, 0.1, seed=3)
    assert val == text[start:end]
    assert train == text[:start] + text[end:]
    assert len(train) + len(val) == len(text)
    assert start == 0 or text[start - 2 : start] == "\n\n"
    assert val.startswith("Paragraph ")
    paragraphs_val = {p for p in val.split("\n\n") if p.strip()}
    paragraphs_train = {p for p in train.split("\n\n") if p.strip()}
    assert not paragraphs_val & paragraphs_train  # numbered paragraphs: no text in both
    assert 0.05 < len(val) / len(text) < 0.2


def test_split_is_seeded_and_deterministic():
    text = corpus_text(60)
    assert split_text(text, 0.1, seed=7) == split_text(text, 0.1, seed=7)
    starts = {split_span(text, 0.1, seed=s)[0] for s in range(8)}
    assert len(starts) > 1  # the seed moves the validation span


def test_split_falls_back_to_lines_and_words():
    lines = "\n".join(f"line {i} of the text" for i in range(50))
    train, val = split_text(lines, 0.2, seed=0)
    assert val and train and all(line in lines.splitlines() for line in val.strip().splitlines())
    words = " ".join(f"w{i}" for i in range(100))
    train, val = split_text(words, 0.2, seed=0)
    assert val and train and len(train) + len(val) == len(words)


# --------------------------------------------------------------------------- prepare_data


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(corpus_text(), encoding="utf-8")
    return path


def test_lexicon_lines_go_to_training_only(tmp_path, corpus):
    tokenizer = train_tokenizer(corpus_text())
    words = ["zquxlexeme", "qwvfrobnitz"]
    bundle = prepare_data(
        data_spec(corpus, lexicon_in_training=True), tokenizer, tmp_path / "c", 0, words
    )
    assert all(w in bundle.train_text for w in words)
    assert not any(w in bundle.val_text for w in words)
    val_ids = set(bundle.val_tensor().flatten().tolist())
    train_only = prepare_data(data_spec(corpus), tokenizer, tmp_path / "c", 0, words)
    assert not any(w in train_only.train_text for w in words)
    assert train_only.val_text == bundle.val_text  # the lexicon never moves the split
    assert set(train_only.val_tensor().flatten().tolist()) == val_ids


def test_blocks_have_seq_len_and_start_with_bos(tmp_path, corpus):
    tokenizer = train_tokenizer(corpus_text())
    bundle = prepare_data(data_spec(corpus, seq_len=16), tokenizer, tmp_path / "c", 0)
    blocks = bundle.train_tensor()
    assert blocks.shape[1] == 16 and len(blocks) > 10
    assert (blocks[:, 0] == tokenizer.bos_token_id).all()
    assert bundle.val_bytes == sum(bundle.val_blocks["n_bytes"]) > 0


def test_short_corpus_says_how_many_tokens(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("\n\n".join(f"tiny paragraph {i}" for i in range(25)))
    tokenizer = train_tokenizer(corpus_text())
    with pytest.raises(DataError, match=r"short\.txt: the corpus has \d+ tokens.*seq_len = 512"):
        prepare_data(data_spec(path, seq_len=512), tokenizer, tmp_path / "c", 0)


def test_cache_is_reused_but_never_for_a_changed_tokenizer(tmp_path, corpus):
    tokenizer = train_tokenizer(corpus_text())
    first = prepare_data(data_spec(corpus), tokenizer, tmp_path / "c", 0)
    again = prepare_data(data_spec(corpus), tokenizer, tmp_path / "c", 0)
    assert again.fingerprint == first.fingerprint
    assert torch.equal(again.train_tensor(), first.train_tensor())
    tokenizer.add_tokens(["riverrun"])
    changed = prepare_data(data_spec(corpus), tokenizer, tmp_path / "c", 0)
    assert changed.fingerprint != first.fingerprint
    assert (changed.train_tensor() == len(tokenizer) - 1).any()  # the new id is used
    shorter = prepare_data(data_spec(corpus, seq_len=16), tokenizer, tmp_path / "c", 0)
    assert shorter.fingerprint != changed.fingerprint


# --------------------------------------------------------------------------- bits per byte


@pytest.mark.parametrize("start", ["bos", "eos", "none"])
def test_bits_per_byte_matches_a_hand_computation(tmp_path, start):
    text = corpus_text().replace("Eve", "Ève").replace("Adam", "Ädäm")  # multi-byte characters
    tokenizer = train_tokenizer(text, bos=start == "bos")
    if start == "none":
        tokenizer.eos_token = None
    path = tmp_path / "c.txt"
    path.write_text(text, encoding="utf-8")
    bundle = prepare_data(data_spec(path, seq_len=16), tokenizer, None, 0)
    model = tiny_model(len(tokenizer), tied=False).eval()

    # by hand: tokens of the validation text, cut into blocks (the last one short), each opened
    # by the start token as context when there is one, NLL summed over predicted tokens
    enc = tokenizer(bundle.val_text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    opener = {"bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id, "none": None}[start]
    per_block = 16 if opener is None else 15
    n_blocks = -(-len(ids) // per_block)
    assert len(ids) % per_block, "the text should leave a partial block to cover"
    nll, n_tokens, n_bytes = 0.0, 0, 0
    for b in range(n_blocks):
        lo, hi = b * per_block, min(len(ids), (b + 1) * per_block)
        block = torch.tensor([([] if opener is None else [opener]) + ids[lo:hi]])
        with torch.no_grad():
            logits = model(block).logits[0, :-1]
        nll += float(F.cross_entropy(logits, block[0, 1:], reduction="sum"))
        n_tokens += block.shape[1] - 1
        # bytes of the predicted tokens: from the end of the last token not predicted
        begin = offsets[lo - 1][1] if opener is not None and b else offsets[lo][1] if opener is None else 0
        n_bytes += len(bundle.val_text[begin : offsets[hi - 1][1]].encode())
    assert len(bundle.val_blocks) == n_blocks
    result = evaluate(model, bundle.val_tensor(), list(bundle.val_blocks["n_bytes"]), 4,
                      len(tokenizer), lengths=bundle.val_lengths())
    assert result["val_tokens"] == n_tokens and result["val_bytes"] == n_bytes
    assert result["val_loss"] == pytest.approx(nll / n_tokens, rel=1e-5)
    assert result["bits_per_byte"] == pytest.approx(nll / n_bytes / math.log(2), rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(nll / n_tokens), rel=1e-5)
    assert result["uniform_loss"] == pytest.approx(math.log(len(tokenizer)))
    if opener is not None:  # every byte of the validation text up to its last token is predicted
        covered = bundle.val_text[: offsets[-1][1]]
        assert n_bytes == len(covered.encode()) > len(covered)


def test_validation_of_two_tokenizers_covers_the_same_bytes(tmp_path):
    """A tokenizer with one more whole word cuts the text into other blocks, yet its
    validation predicts exactly the same bytes: the comparison of a run's base model with its
    injected one rests on this."""
    text = corpus_text()
    path = tmp_path / "c.txt"
    path.write_text(text, encoding="utf-8")
    tokenizer = train_tokenizer(text)
    base = prepare_data(data_spec(path, seq_len=16), tokenizer, None, 0)
    tokenizer.add_tokens(["riverrun"])
    injected = prepare_data(data_spec(path, seq_len=16), tokenizer, None, 0)
    assert injected.val_text == base.val_text and "riverrun" in base.val_text
    assert len(injected.val_blocks) != len(base.val_blocks) or \
        injected.val_lengths() != base.val_lengths()
    assert injected.val_bytes == base.val_bytes == len(base.val_text.encode())  # byte-level: all


def test_synthetic_sentences_go_to_training_only(tmp_path, corpus):
    tokenizer = train_tokenizer(corpus_text())
    words = ["zquxlexeme", "qwvfrobnitz"]
    plain = prepare_data(data_spec(corpus), tokenizer, tmp_path / "c", 0, words)
    bundle = prepare_data(data_spec(corpus, synthetic_sentences=2), tokenizer, tmp_path / "c", 0, words)
    assert all(bundle.train_text.count(w) == 2 for w in words)
    assert not any(w in bundle.val_text for w in words)
    assert bundle.val_text == plain.val_text
    assert len(bundle.train_text) > len(plain.train_text)
