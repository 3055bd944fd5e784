"""Checks of an exported GGUF in llama.cpp itself (llama-cpp-python, vocabulary only), and the
stand-in runs the export tests build."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

STAND_IN_RECIPE = """\
[run]
name = "{name}"
seed = 5

[model]
name = "{model}"

[data]
corpus = "{corpus}"
lexicon = "{lexicon}"
seq_len = 32
validation_fraction = 0.1

[[phases]]
name = "p1"
strategy = "embed-only"
steps = 2
learning_rate = 1e-2
batch_size = 2
eval_batches = 1

[analysis]
metrics = []
baselines = false

[report]
html = false
"""


def export_stand_in(root: Path, key: str, tokenizer: Path, name: str, *export_args: str) -> str:
    """In ``root``: a random-weight stand-in (``REAL_STAND_INS[key]``) with a real tokenizer
    file in ``base``, a two-step P1 ``run`` on the demo corpus plus English, its export
    ``NAME.gguf`` (f32) and the base model's own ``base.gguf``; returns the export's output."""
    from click.testing import CliRunner
    from conftest import DATA

    from wake2vec.cli import cli
    from wake2vec.export.runtime import convert
    from wake2vec.testing import build_real_stand_in, english_text

    tree = need_converter()
    base = build_real_stand_in(root / "base", key, tokenizer)
    text = (DATA / "demo_corpus.txt").read_text(encoding="utf-8")[:40_000]
    (root / "corpus.txt").write_text(text + "\n" + english_text(20_000, seed=4), encoding="utf-8")
    recipe = root / "recipe.toml"
    recipe.write_text(STAND_IN_RECIPE.format(name=name, model=base.as_posix(),
                                             corpus=(root / "corpus.txt").as_posix(),
                                             lexicon=(DATA / "demo_lexicon.txt").as_posix()),
                      encoding="utf-8")
    result = CliRunner().invoke(cli, ["run", str(recipe), "--output-dir", str(root / "run")])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["export", str(root / "run"), "--gguf",
                                      str(root / f"{name}.gguf"), "--outtype", "f32",
                                      *export_args])
    assert result.exit_code == 0, result.output
    convert(base, root / "base.gguf", "f32", tree)
    return result.output


def need_llama_cpp():
    """llama_cpp, or skip (fail where real assets are required: CI installs it from the test
    cache's wheel, built once per machine by ``python -m wake2vec.testing fetch llama-cpp``)."""
    from wake2vec.testing import REQUIRE_ENV

    try:
        import llama_cpp
    except ImportError:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"llama-cpp-python is not installed ({REQUIRE_ENV}=1)")
        pytest.skip("llama-cpp-python is not installed (pip install 'wake2vec[llama-cpp]')")
    return llama_cpp


def need_converter() -> Path:
    """llama.cpp's converter, fetched once into the test cache; ``WAKE2VEC_LLAMA_CPP`` then
    names it for the commands the test runs."""
    from wake2vec.errors import UserInputError
    from wake2vec.export.runtime import TREE_ENV, converter_tree, pinned_tree
    from wake2vec.testing import REQUIRE_ENV, asset_cache

    try:
        tree = converter_tree(pinned_tree(asset_cache()))
    except UserInputError as exc:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    os.environ[TREE_ENV] = str(tree)
    return tree


def new_ids(run: Path) -> set[int]:
    """The ids the run added (its ``injection.json``): after the base tokenizer's entries, on
    former padding rows first (Qwen's 151,936 rows hold 151,669 entries)."""
    embedding = json.loads((run / "injection.json").read_text(encoding="utf-8"))["embedding"]
    return set(range(embedding["tokenizer_entries_before"], embedding["tokenizer_entries_after"]))


def tokenizer_keys(gguf_path: Path) -> dict[str, Any]:
    """A GGUF's tokenizer keys (``tokenizer.ggml.pre``, ``.tokens``, ``.merges``, ...)."""
    import gguf

    fields = gguf.GGUFReader(str(gguf_path)).fields
    return {name: field.contents() for name, field in fields.items()
            if name.startswith("tokenizer.ggml.")}


def left_out(keys: dict[str, Any]) -> set[int]:
    """The run's ids an export left out (named ``[wake2vec-unexported-ID]`` among the GGUF's
    tokens; ``keys`` from ``tokenizer_keys``)."""
    from wake2vec.export.llama_gguf import UNEXPORTED

    return {i for i, token in enumerate(keys["tokenizer.ggml.tokens"])
            if token.startswith(UNEXPORTED)}


def llama_tokenize(path: Path):
    llama_cpp = need_llama_cpp()
    llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)

    def tokenize(text: str) -> list[int]:
        return list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    return tokenize


def new_id_gaps(run_tokenizer: Path, exported: Path, lines: list[str], new_ids: set[int]
                ) -> tuple[int, list[tuple[str, Counter[int], Counter[int]]]]:
    """Lexicon occurrences (new ids of the run's own tokenizer, line by line) and each line
    where llama.cpp does not give the same new ids: (line, the run's, llama.cpp's)."""
    from tokenizers import Tokenizer

    run_tok = Tokenizer.from_file(str(run_tokenizer))
    tokenize = llama_tokenize(exported)
    total, gaps = 0, []
    for line in lines:  # as it stands in a text: after a newline
        want = Counter(i for i in run_tok.encode("\n" + line, add_special_tokens=False).ids
                       if i in new_ids)
        have = Counter(i for i in tokenize("\n" + line) if i in new_ids)
        total += sum(want.values())
        if want != have:
            gaps.append((line, want, have))
    return total, gaps


def differing_lines(exported: Path, base: Path, lines: list[str]) -> list[str]:
    a, b = llama_tokenize(exported), llama_tokenize(base)
    return [line for line in lines if a(line) != b(line)]


def lines_unlike_transformers(exported: Path, tokenizer_json: Path, lines: list[str]
                              ) -> list[str]:
    """Lines llama.cpp tokenises otherwise than ``tokenizer_json`` does in the tokenizers
    library (what the model saw in training), special tokens left out on both sides."""
    from tokenizers import Tokenizer

    hf, tokenize = Tokenizer.from_file(str(tokenizer_json)), llama_tokenize(exported)
    return [line for line in lines
            if tokenize(line) != hf.encode(line, add_special_tokens=False).ids]
