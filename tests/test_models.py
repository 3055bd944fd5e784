"""Model families and the shared loader: the demo model, the auto family, loader errors."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from helpers_models import build_tiny_gpt2
from wake2vec_plugins.models import auto, demo
from wake2vec_plugins.models.auto import AutoFamily
from wake2vec_plugins.models.demo import INCOMPLETE, MANIFEST, DemoFamily

from wake2vec.api import ModelRequest
from wake2vec.errors import DataError, UserInputError
from wake2vec.modeling import load_pretrained, read_model_type

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "data" / "demo_corpus.txt"

ROUND_TRIP = [
    "riverrun, past Eve and Adam's, from swerve of shore",
    "riverrùn générations o'thunderment bell-tumblish\n\nnew paragraph",
    "inner  double  spaces, a tab\there,\n  an indented line and a trailing space ",
    "Ünïcödé «quotes» — dash, 日本語, emoji 🙂, digits 1939.",
    "\n",
]


def request(cache_dir: Path, *, corpus: Path | None = CORPUS, seed: int = 0, **kw) -> ModelRequest:
    fields = dict(name=None, dtype="float32", quantization="none", trust_remote_code=False)
    fields.update(kw)
    return ModelRequest(seed=seed, cache_dir=cache_dir, corpus=corpus, **fields)


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(CORPUS.read_text(encoding="utf-8")[:40_000], encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def demo_loaded(demo_cache):
    return DemoFamily().load(request(demo_cache))


def files_state(directory: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(directory.iterdir())}


# --------------------------------------------------------------------------- demo family


def test_demo_builds_a_saved_llama_and_loads_it_with_from_pretrained(demo_loaded):
    directory = Path(demo_loaded.source)
    assert demo_loaded.family == "demo"
    for name in ("config.json", "model.safetensors", "tokenizer.json", MANIFEST):
        assert (directory / name).is_file(), name
    assert not (directory / INCOMPLETE).exists()
    assert read_model_type(str(directory)) == "llama"
    assert type(demo_loaded.model).__name__ == "LlamaForCausalLM"
    assert type(demo_loaded.tokenizer).__name__ == "LlamaTokenizer"
    assert demo_loaded.lora_targets == DemoFamily.lora_targets
    # the embedding matrix matches the tokenizer, and the model runs
    assert demo_loaded.model.get_input_embeddings().weight.shape == (len(demo_loaded.tokenizer), 64)
    batch = demo_loaded.tokenizer(["riverrun, past Eve"], return_tensors="pt")
    with torch.no_grad():
        logits = demo_loaded.model(**batch).logits
    assert logits.shape[-1] == len(demo_loaded.tokenizer)
    assert torch.isfinite(logits).all()


def test_demo_tokenizer_is_llama_style(demo_loaded):
    tok = demo_loaded.tokenizer
    ids = tok("the river ran")["input_ids"]
    pieces = tok.convert_ids_to_tokens(ids)
    assert pieces[0] == tok.bos_token == "<s>"
    assert "▁the" in pieces  # word-boundary pieces, as in SentencePiece Llama tokenizers
    assert tok.convert_ids_to_tokens(tok("日", add_special_tokens=False)["input_ids"])[-3:] == [
        "<0xE6>",
        "<0x97>",
        "<0xA5>",
    ]  # byte fallback, never <unk>
    assert tok.pad_token == tok.eos_token == "</s>"
    assert 900 <= len(tok) <= 1000
    lexicon = (REPO / "data" / "demo_lexicon.txt").read_text(encoding="utf-8").split()
    whole = [w for w in lexicon if len(tok(" " + w, add_special_tokens=False)["input_ids"]) == 1]
    assert len(whole) < len(lexicon) // 20  # the coinages are left for injection to add


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_demo_tokenizer_round_trips_text_after_reload(demo_loaded, text):
    # (A space at the very start of a text is absorbed by the Metaspace prefix, as with every
    # Llama tokenizer in transformers; anywhere else whitespace survives.)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(demo_loaded.source)
    ids = tok(text)["input_ids"]
    assert tok.unk_token_id not in ids
    assert tok.decode(ids, skip_special_tokens=True) == text


def test_demo_tokenizer_round_trips_random_text(demo_loaded):
    import random

    rng = random.Random(0)
    pool = list("abcdefghijklmnopqrstuvwxyz  ,.'-\n\tÉéùàöñß日本🙂«»") + ["riverrùn", "\n\n"]
    tok = demo_loaded.tokenizer
    for _ in range(50):
        text = "x" + "".join(rng.choice(pool) for _ in range(rng.randint(1, 60)))
        assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True) == text


def test_demo_is_untied_by_default(demo_loaded):
    model = demo_loaded.model
    assert demo_loaded.tied is False
    assert model.config.tie_word_embeddings is False
    inputs, outputs = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert inputs.data_ptr() != outputs.data_ptr()
    assert not torch.equal(inputs, outputs)


def test_demo_is_tied_when_asked(tmp_path, small_corpus):
    family = DemoFamily(DemoFamily.Params(tie_word_embeddings=True))
    loaded = family.load(request(tmp_path, corpus=small_corpus))
    model = loaded.model
    assert loaded.tied is True
    assert model.config.tie_word_embeddings is True
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight


def test_demo_cache_is_reused_without_rebuilding(demo_loaded, demo_cache, monkeypatch):
    directory = Path(demo_loaded.source)
    before = files_state(directory)

    def must_not_build(*args, **kwargs):
        raise AssertionError("the cached demo model was rebuilt")

    monkeypatch.setattr(demo, "train_tokenizer", must_not_build)
    monkeypatch.setattr(demo, "random_llama", must_not_build)
    again = DemoFamily().load(request(demo_cache))
    assert again.source == demo_loaded.source
    assert files_state(directory) == before
    assert torch.equal(again.model.lm_head.weight, demo_loaded.model.lm_head.weight)


def test_demo_rebuilds_a_half_written_directory(tmp_path, small_corpus, monkeypatch):
    first = DemoFamily().load(request(tmp_path, corpus=small_corpus))
    directory = Path(first.source)
    (directory / INCOMPLETE).touch()  # as if a build had been interrupted mid-write
    weights = directory / "model.safetensors"
    weights.unlink()  # (not truncated in place: the loaded model still maps the old file)
    weights.write_bytes(b"truncated")
    builds = []
    real = demo.random_llama
    monkeypatch.setattr(demo, "random_llama", lambda *a, **k: builds.append(1) or real(*a, **k))
    second = DemoFamily().load(request(tmp_path, corpus=small_corpus))
    assert builds == [1]
    assert second.source == first.source
    assert not (directory / INCOMPLETE).exists()
    assert torch.equal(second.model.lm_head.weight, first.model.lm_head.weight)


def test_demo_build_failure_leaves_nothing_to_reuse(tmp_path, small_corpus, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(demo, "random_llama", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        DemoFamily().load(request(tmp_path, corpus=small_corpus))
    assert list((tmp_path / "demo-models").iterdir()) == []


def test_demo_weights_follow_the_seed(tmp_path, small_corpus):
    a = DemoFamily().load(request(tmp_path / "a", corpus=small_corpus, seed=7))
    b = DemoFamily().load(request(tmp_path / "b", corpus=small_corpus, seed=7))
    c = DemoFamily().load(request(tmp_path / "a", corpus=small_corpus, seed=8))
    assert torch.equal(a.model.lm_head.weight, b.model.lm_head.weight)
    assert c.source != a.source
    assert not torch.equal(a.model.lm_head.weight, c.model.lm_head.weight)


def test_demo_refuses_bad_params_and_missing_corpus(tmp_path):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="heads"):
        DemoFamily.Params(hidden_size=64, heads=5)
    with pytest.raises(ValidationError):
        DemoFamily.Params(layer=2)  # misspelt key
    missing = tmp_path / "nope.txt"
    with pytest.raises(DataError, match=str(missing)):
        DemoFamily().load(request(tmp_path, corpus=missing))


# --------------------------------------------------------------------------- loader errors


def load(source: str | Path, **kw):
    args = dict(family="auto", dtype="float32", quantization="none", trust_remote_code=False)
    args.update(kw)
    return load_pretrained(str(source), **args)


def test_missing_path_is_a_user_error(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(UserInputError, match=f"{missing} does not exist"):
        load(missing)
    with pytest.raises(UserInputError, match="does not exist"):
        read_model_type(str(missing))


def test_directory_without_config_is_a_user_error(tmp_path):
    with pytest.raises(UserInputError, match=f"{tmp_path} has no config.json"):
        load(tmp_path)


def test_malformed_config_names_the_file_and_position(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llama",\n  "hidden_size": }\n')
    expected = f"{tmp_path / 'config.json'} is not valid JSON \\(line 2"
    with pytest.raises(UserInputError, match=expected):
        load(tmp_path)
    with pytest.raises(UserInputError, match=expected):
        read_model_type(str(tmp_path))


def test_unknown_model_type_says_how_to_add_a_family(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "wakeformer"}))
    with pytest.raises(UserInputError) as info:
        load(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "config.json") in message
    assert "'wakeformer'" in message
    assert "wake2vec_register_model_families" in message
    assert read_model_type(str(tmp_path)) == "wakeformer"


def test_model_directory_without_tokenizer_is_a_user_error(tmp_path, demo_loaded):
    (tmp_path / "config.json").write_text(
        (Path(demo_loaded.source) / "config.json").read_text(encoding="utf-8")
    )
    with pytest.raises(UserInputError, match=f"tokenizer from {tmp_path}"):
        load(tmp_path)


def test_uncached_hub_id_offline_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(UserInputError, match="HF_HUB_OFFLINE=1") as info:
        load("wake2vec-tests/never-downloaded-model")
    assert "wake2vec-tests/never-downloaded-model" in str(info.value)
    assert time.perf_counter() - start < 20  # no network retries (they take about 40 s)
    assert read_model_type("wake2vec-tests/never-downloaded-model") is None


def test_nf4_without_bitsandbytes_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # makes the import fail
    with pytest.raises(UserInputError, match="bitsandbytes"):
        load(tmp_path, quantization="nf4")


def test_unknown_dtype_is_a_user_error(demo_loaded):
    with pytest.raises(UserInputError, match="float64"):
        load(demo_loaded.source, dtype="float64")


def test_nf4_loads_the_demo_model_quantized(demo_loaded):
    pytest.importorskip("bitsandbytes")
    loaded = load(demo_loaded.source, quantization="nf4")
    q_proj = loaded.model.model.layers[0].self_attn.q_proj
    assert type(q_proj).__name__ == "Linear4bit"
    assert loaded.model.get_input_embeddings().weight.dtype == torch.float32
    assert loaded.tied is False


def test_bfloat16_is_honoured(demo_loaded):
    loaded = load(demo_loaded.source, dtype="bfloat16")
    assert loaded.model.get_input_embeddings().weight.dtype == torch.bfloat16


# --------------------------------------------------------------------------- auto family


def test_auto_family_loads_a_byte_level_gpt2_directory(tmp_path):
    directory = build_tiny_gpt2(tmp_path / "gpt2", ["the river ran past the hill " * 4, "riverrun"])
    assert read_model_type(str(directory)) == "gpt2"
    loaded = AutoFamily().load(request(tmp_path, name=str(directory), corpus=None))
    assert loaded.family == "auto"
    assert loaded.source == str(directory)
    assert type(loaded.model).__name__ == "GPT2LMHeadModel"
    assert loaded.tied is True  # GPT-2 ships tied; wake2vec keeps it so
    assert loaded.model.lm_head.weight is loaded.model.get_input_embeddings().weight
    assert loaded.lora_targets == ("c_attn", "c_proj", "c_fc")
    assert loaded.tokenizer.pad_token == "<|endoftext|>"
    assert any("pad" in note for note in loaded.notes)
    text = "riverrun past the hill\n"
    assert loaded.tokenizer.decode(loaded.tokenizer(text)["input_ids"]) == text


def test_auto_family_needs_a_name(tmp_path):
    with pytest.raises(UserInputError, match="model.name"):
        AutoFamily().load(request(tmp_path, corpus=None))


def test_families_register_through_the_hook():
    assert demo.wake2vec_register_model_families() == [DemoFamily]
    assert auto.wake2vec_register_model_families() == [AutoFamily]
    assert DemoFamily.name == "demo" and AutoFamily.name == "auto"
    assert DemoFamily.model_types == () and AutoFamily.model_types == ()
    assert DemoFamily.__doc__.startswith("Tiny random-weight Llama")
    assert AutoFamily.__doc__.startswith("Any causal LM")


# --------------------------------------------------------------------------- bundled demo data


def test_demo_data_is_reproduced_by_its_script(tmp_path):
    import subprocess

    script = REPO / "data" / "make_demo_data.py"
    subprocess.run(
        [sys.executable, str(script), "--out", str(tmp_path)], check=True, capture_output=True
    )
    for name in ("demo_corpus.txt", "demo_lexicon.txt", "demo_morphemes.csv"):
        assert (tmp_path / name).read_bytes() == (REPO / "data" / name).read_bytes(), name


def test_demo_lexicon_holds_coinages_used_in_the_corpus():
    import re

    from wordfreq import zipf_frequency

    lexicon = (REPO / "data" / "demo_lexicon.txt").read_text(encoding="utf-8").splitlines()
    assert 300 <= len(lexicon) <= 600
    assert len(set(lexicon)) == len(lexicon)
    assert all(w == w.lower() and len(w) >= 6 and " " not in w for w in lexicon)
    assert [w for w in lexicon if zipf_frequency(w, "en") > 0] == []  # no English words
    assert sum(bool(re.search(r"[^\x00-\x7f]", w)) for w in lexicon) >= 20  # accented forms
    assert sum("'" in w for w in lexicon) >= 10 and sum("-" in w for w in lexicon) >= 10
    text = CORPUS.read_text(encoding="utf-8")
    assert text.startswith("riverrun, past Eve and Adam's,")
    assert 150_000 <= len(text.encode()) <= 300_000
    assert text.count("\n\n") >= 100  # paragraphs, not a word list
    counts = Counter(re.findall(r"(?<![\w'-])[\w'-]+(?![\w'-])", text))
    rare = [w for w in lexicon if counts[w] < 3]
    assert rare == []


def test_demo_morphemes_have_ten_examples_each():
    import csv

    with (REPO / "data" / "demo_morphemes.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["type", "morpheme"] + [f"example{i}" for i in range(1, 11)]
    kinds = Counter(row[0] for row in rows[1:])
    assert kinds["prefix"] >= 20 and kinds["suffix"] >= 20 and set(kinds) == {"prefix", "suffix"}
    for _kind, morpheme, *examples in rows[1:]:
        assert len(examples) == 10 and all(morpheme in e for e in examples), morpheme


def test_a_bf16_model_on_a_cpu_without_native_bf16_gets_a_note(monkeypatch):
    import torch

    from wake2vec.modeling import cpu_has_native_bf16, precision_notes

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    emulated = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n"
    native = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n"
    arm = "processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n"
    assert cpu_has_native_bf16(emulated) is False
    assert cpu_has_native_bf16(native) is True and cpu_has_native_bf16(arm) is True
    assert cpu_has_native_bf16("") is None  # cannot tell: no note
    [note] = precision_notes("bfloat16", "none", emulated)
    assert 'model.dtype = "float32" trains faster' in note
    assert precision_notes("bfloat16", "none", native) == []
    assert precision_notes("float32", "none", emulated) == []
    assert precision_notes("bfloat16", "none", "") == []
