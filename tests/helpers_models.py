"""Tiny stand-in models for tests: built locally with random weights, never downloaded."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

DEFAULT_TEXTS = (
    "riverrun, past Eve and Adam's, from the shore to the bay,",
    "the old river ran past the hill and the tower by the bridge.",
    "générations of hens sang in the garden; the bell rang again.",
)


def build_tiny_gpt2(
    directory: Path | str,
    texts: Iterable[str] = DEFAULT_TEXTS,
    *,
    vocab_size: int = 400,
    hidden_size: int = 32,
    layers: int = 2,
    heads: int = 2,
    seed: int = 0,
) -> Path:
    """Save a GPT-2-style model (tied head, byte-level BPE tokenizer trained on ``texts``) to
    ``directory`` with save_pretrained and return the directory."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        list(texts), vocab_size=vocab_size, min_frequency=1, special_tokens=["<|endoftext|>"]
    )
    vocab_dir = directory / "bpe"
    vocab_dir.mkdir(exist_ok=True)
    bpe.save_model(str(vocab_dir))
    tokenizer = GPT2Tokenizer(
        vocab=str(vocab_dir / "vocab.json"), merges=str(vocab_dir / "merges.txt")
    )
    for leftover in vocab_dir.iterdir():
        leftover.unlink()
    vocab_dir.rmdir()
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=128,
        n_embd=hidden_size,
        n_layer=layers,
        n_head=heads,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
