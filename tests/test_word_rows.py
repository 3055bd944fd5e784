"""One trainable row per word: a word's two spellings (after a space, bare) keep two ids for
exact round trips but train one row, on the studied models' own tokenizers."""

from __future__ import annotations

import json

import pytest
import torch
from helpers_families import REAL_STAND_INS, build_real_stand_in

WORDS = ["rewakeful", "unriverly", "dischanting"]
SPACE, BARE = "the {w} hill", "({w}) hill"  # the same word after a space and bare


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def injected(request, tmp_path_factory, real_tokenizer):
    """A stand-in with the real Llama-2 (untied) or Qwen (untied) tokenizer, injected."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from wake2vec_plugins.initializers.basic import Mean
    from wake2vec_plugins.injectors.whole_word import WholeWord

    from wake2vec.vocab.injection import apply_injection

    key = request.param
    folder = build_real_stand_in(tmp_path_factory.mktemp(key), key,
                                 real_tokenizer(REAL_STAND_INS[key][1]))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    injection = WholeWord().inject(tokenizer, WORDS)
    apply_injection(model, injection, Mean(), base_ids=list(range(len(tokenizer))),
                    morphology=None, seed=0, tied=False, base_tokenizer=tokenizer)
    return model, injection


def _ids(injection, text: str) -> torch.Tensor:
    return torch.tensor([injection.tokenizer(text, add_special_tokens=False)["input_ids"]])


def test_both_spellings_move_the_same_row(injected):
    from wake2vec.training.rows import attach_rows, detach_rows

    model, injection = injected
    handles = attach_rows(model, injection.row_ids(), False, injection.aliases,
                          injection.alias_shift)
    try:
        assert handles.input_rows.shape[0] == len(WORDS)  # one trainable row per word
        row = handles.new_ids.index(injection.row_ids()[injection.row_words().index(WORDS[0])])
        seen = set()
        for template in (SPACE, BARE):
            ids = _ids(injection, template.format(w=WORDS[0]))
            new = [i for i in ids[0].tolist() if i in set(injection.ids)]
            assert len(new) == 1
            seen.add(new[0])
            for p in handles.parameters():
                p.grad = None
            model(input_ids=ids, labels=ids).loss.backward()
            # the input side: only the word's row; the head's rows all take part in the softmax
            moved = handles.input_rows.grad.abs().sum(dim=1) > 0
            assert moved.tolist() == [n == row for n in range(len(WORDS))], template
            assert handles.output_rows.grad[row].abs().sum() > 0
        assert len(seen) == 2  # two ids, one row
    finally:
        detach_rows(model, handles, write_back=False)


def test_the_two_spellings_split_the_word_by_the_shift(injected):
    """The bare id's rows are the word's rows plus each matrix's shift, so the head gives the
    two spellings logits that differ by the hidden state's product with the output shift."""
    model, injection = injected
    embed = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    shift_in, shift_out = injection.alias_shift["input"], injection.alias_shift["output"]
    assert shift_in is not None and shift_out is not None and not torch.equal(shift_in, shift_out)
    for bare, owner in injection.aliases.items():
        assert torch.equal(embed[bare], embed[owner] + shift_in)
        assert torch.equal(head[bare], head[owner] + shift_out)
    ids = _ids(injection, "past Eve and Adam's, from swerve of shore")
    with torch.no_grad():
        out = model(input_ids=ids, output_hidden_states=True)
    hidden = out.hidden_states[-1][0]
    bare, owner = next(iter(injection.aliases.items()))
    gap = out.logits[0, :, bare] - out.logits[0, :, owner]
    torch.testing.assert_close(gap, hidden @ shift_out, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_a_p1_run_trains_one_row_per_word(tmp_path, cli, real_tokenizer):
    """``wake2vec run``: a word that occurs once bare and once after a space trains one row;
    the run's trainable rows are the words added."""
    from safetensors.torch import load_file

    model = build_real_stand_in(tmp_path / "model", "llama", real_tokenizer("llama2"))
    lines = [f"{SPACE.format(w=w)} and {BARE.format(w=w)} again." for w in WORDS]
    (tmp_path / "corpus.txt").write_text("\n".join(lines * 8) + "\n", encoding="utf-8")
    (tmp_path / "lexicon.txt").write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(f"""
[run]
name = "rows"
[model]
name = "{model.as_posix()}"
[data]
corpus = "corpus.txt"
lexicon = "lexicon.txt"
seq_len = 16
validation_fraction = 0.25
[[phases]]
name = "p1"
strategy = "embed-only"
steps = 3
learning_rate = 0.05
batch_size = 2
[analysis]
metrics = ["drift"]
generation = {{ enabled = false }}
[report]
html = false
""", encoding="utf-8")
    out = tmp_path / "run"
    result = cli("run", str(recipe), "--output-dir", str(out))
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["injection"] == {"new_ids": 6, "words": 3, "trainable_rows": 3}
    checkpoint = sorted((out / "01-p1" / "checkpoints").glob("step-*"))[-1]
    trainable = load_file(str(checkpoint / "trainable.safetensors"))
    assert trainable["input"].shape[0] == trainable["output"].shape[0] == 3
    injected_rows = load_file(str(out / "injected_rows.safetensors"))
    moved = (trainable["input"] - injected_rows["input"]).abs().sum(dim=1)
    assert (moved > 0).all()  # every word's one row trained
    drift = json.loads((out / "01-p1" / "metrics.json").read_text())["analysis"]["drift"]
    assert drift["new"]["rows"] == 3
