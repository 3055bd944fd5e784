"""The ``demo`` model family: a tiny random-weight Llama whose SentencePiece tokenizer is
trained on the recipe's corpus, built once into the cache and loaded like any saved model."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from wake2vec import api, hookimpl
from wake2vec.errors import DataError, UserInputError
from wake2vec.modeling import load_pretrained

BUNDLED_CORPUS = Path(__file__).resolve().parents[2] / "data" / "demo_corpus.txt"
MANIFEST = "wake2vec-demo.json"  # written last: its presence marks a complete build
INCOMPLETE = ".incomplete"  # present while a build is being written
BUILD_FORMAT = 1  # bump when the way the model is built changes
MAX_PIECE_INPUT = 4000  # characters per SentencePiece training sentence


class DemoFamily(api.ModelFamily):
    """Tiny random-weight Llama with a SentencePiece tokenizer trained on the corpus (exercises the pipeline; not a language model)."""

    name: ClassVar[str] = "demo"
    model_types: ClassVar[tuple[str, ...]] = ()
    lora_targets: ClassVar[tuple[str, ...]] = (
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    )

    class Params(api.Params):
        vocab_size: int = Field(
            1000, ge=300, le=100_000, description="SentencePiece vocabulary size"
        )
        hidden_size: int = Field(64, ge=8, le=4096)
        layers: int = Field(2, ge=1, le=64)
        heads: int = Field(4, ge=1, le=64)
        intermediate_size: int = Field(128, ge=8, le=16384)
        max_position_embeddings: int = Field(512, ge=16, le=131_072)
        tie_word_embeddings: bool = False
        tokenizer: Literal["sentencepiece", "byte-level"] = Field(
            "sentencepiece",
            description="SentencePiece-style BPE (Llama's kind) or byte-level BPE (GPT-2's and Qwen's)",
        )

        @model_validator(mode="after")
        def _heads_divide_hidden(self) -> DemoFamily.Params:
            if self.hidden_size % self.heads or (self.hidden_size // self.heads) % 2:
                raise ValueError(
                    f"hidden_size {self.hidden_size} must split into {self.heads} heads "
                    "of an even size (rotary embeddings)"
                )
            return self

    def load(self, request: api.ModelRequest) -> api.LoadedModel:
        corpus = request.corpus if request.corpus is not None else BUNDLED_CORPUS
        directory = build_demo_model(
            corpus, self.params, seed=request.seed, cache_dir=request.cache_dir
        )
        loaded = load_pretrained(
            str(directory),
            family=self.name,
            dtype=request.dtype,
            quantization=request.quantization,
            trust_remote_code=False,  # the demo is plain Llama; no remote code to trust
            lora_targets=self.lora_targets,
            tokenizer_ready=request.tokenizer_ready,
        )
        loaded.notes.append(f"demo model (random weights) built from {corpus} in {directory}")
        return loaded


def cache_key(corpus_bytes: bytes, params: DemoFamily.Params, seed: int) -> str:
    """Hash of everything the built model depends on."""
    import transformers

    digest = hashlib.sha256()
    digest.update(corpus_bytes)
    recipe = {
        "params": params.model_dump(),
        "seed": seed,
        "format": BUILD_FORMAT,
        "transformers": transformers.__version__,
    }
    digest.update(json.dumps(recipe, sort_keys=True).encode())
    return digest.hexdigest()


def is_complete(directory: Path, key: str) -> bool:
    """A cached build is reused only when it finished writing and was built for ``key``."""
    manifest = directory / MANIFEST
    if (directory / INCOMPLETE).exists() or not manifest.is_file():
        return False
    try:
        return json.loads(manifest.read_text(encoding="utf-8")).get("key") == key
    except (OSError, ValueError, AttributeError):
        return False


def build_demo_model(
    corpus: Path, params: DemoFamily.Params, *, seed: int, cache_dir: Path
) -> Path:
    """The directory of the demo model for this corpus, params and seed, built if needed.

    Builds go to a temporary sibling directory that is renamed into place once complete, so an
    interrupted build is never mistaken for a finished one."""
    try:
        corpus_bytes = Path(corpus).read_bytes()
    except OSError as exc:
        raise DataError(f"corpus {corpus} cannot be read: {exc.strerror or exc}") from None
    if not corpus_bytes.strip():
        raise DataError(f"corpus {corpus} is empty; the demo tokenizer needs text to train on")
    key = cache_key(corpus_bytes, params, seed)
    parent = Path(cache_dir) / "demo-models"
    final = parent / key[:20]
    if is_complete(final, key):
        return final
    parent.mkdir(parents=True, exist_ok=True)
    if final.exists():  # a leftover from an interrupted or foreign build
        shutil.rmtree(final)
    staging = Path(tempfile.mkdtemp(prefix=f".{key[:20]}-", dir=parent))
    try:
        (staging / INCOMPLETE).touch()
        text = corpus_bytes.decode("utf-8", errors="replace")
        tokenizer = train_tokenizer(text, params, staging, corpus)
        model = random_llama(tokenizer, params, seed)
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        manifest = {
            "key": key,
            "corpus": str(corpus),
            "seed": seed,
            "params": params.model_dump(),
            "vocab_size": len(tokenizer),
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        (staging / INCOMPLETE).unlink()
        try:
            os.rename(staging, final)
        except OSError:  # another process finished the same build first
            if not is_complete(final, key):
                raise
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def _sentences(text: str) -> Iterator[str]:
    """Corpus lines for the SentencePiece trainer, long lines cut at spaces."""
    for line in text.splitlines():
        while len(line) > MAX_PIECE_INPUT:
            cut = line.rfind(" ", 0, MAX_PIECE_INPUT)
            cut = cut if cut > 0 else MAX_PIECE_INPUT
            yield line[:cut]
            line = line[cut:]
        if line.strip():
            yield line


def train_tokenizer(text: str, params: DemoFamily.Params, workdir: Path, corpus: Path):
    """A tokenizer of the kind ``params.tokenizer`` names, trained on ``text``."""
    if params.tokenizer == "byte-level":
        return train_byte_level(text, params)
    return train_sentencepiece(text, params, workdir, corpus)


def train_byte_level(text: str, params: DemoFamily.Params):
    """A GPT-2-style byte-level BPE with one ``<|endoftext|>`` token for bos and eos."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    raw = ByteLevelBPETokenizer(add_prefix_space=False)
    raw.train_from_iterator(_sentences(text), vocab_size=params.vocab_size, min_frequency=2,
                            special_tokens=["<|endoftext|>"], show_progress=False)
    return PreTrainedTokenizerFast(tokenizer_object=raw._tokenizer, bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>",
                                   model_max_length=params.max_position_embeddings)


def train_sentencepiece(text: str, params: DemoFamily.Params, workdir: Path, corpus: Path):
    """A Llama-style tokenizer (BPE, ``▁`` word boundaries, byte fallback) trained on ``text``."""
    import sentencepiece as spm
    from transformers import LlamaTokenizer

    model_bytes = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=_sentences(text),
            model_writer=model_bytes,
            model_type="bpe",
            vocab_size=params.vocab_size,
            byte_fallback=True,
            character_coverage=1.0,
            split_digits=True,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            add_dummy_prefix=True,
            allow_whitespace_only_pieces=True,
            hard_vocab_limit=False,
            unk_id=0,
            bos_id=1,
            eos_id=2,
            pad_id=-1,
            max_sentence_length=MAX_PIECE_INPUT * 4 + 16,
            num_threads=2,
            minloglevel=2,
        )
    except RuntimeError as exc:
        raise UserInputError(
            f"the demo tokenizer cannot be trained on {corpus} with vocab_size "
            f"{params.vocab_size}: {exc}; change model.params.vocab_size"
        ) from None
    spm_dir = workdir / "spm"
    spm_dir.mkdir()
    (spm_dir / "tokenizer.model").write_bytes(model_bytes.getvalue())
    tokenizer = LlamaTokenizer.from_pretrained(
        spm_dir,
        add_bos_token=True,
        add_eos_token=False,
        model_max_length=params.max_position_embeddings,
    )
    shutil.rmtree(spm_dir)
    return tokenizer


def random_llama(tokenizer, params: DemoFamily.Params, seed: int):
    """A LlamaForCausalLM with weights drawn from ``seed``, sized for ``tokenizer``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=params.hidden_size,
        intermediate_size=params.intermediate_size,
        num_hidden_layers=params.layers,
        num_attention_heads=params.heads,
        num_key_value_heads=params.heads,
        max_position_embeddings=params.max_position_embeddings,
        tie_word_embeddings=params.tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model


@hookimpl
def wake2vec_register_model_families() -> list[type]:
    return [DemoFamily]
