"""Tiny tokenizers trained in the test on English text: a SentencePiece-style Llama tokenizer
(Metaspace ``▁``, byte fallback) and a GPT-2-style byte-level BPE, each saved with
save_pretrained and loaded back with AutoTokenizer, as a run would load a hub model's."""

from __future__ import annotations

from pathlib import Path

from wake2vec.testing import retrained_as

ENGLISH = """\
The river ran past the church and the old house, from the shore to the bend of the bay.
Where through the night the shore brings those voices back, the children sing and the fire
burns. They were walking through the town when the rain began; nothing there was quiet.
A man and a woman stood by the water. "Where are you going?" she asked. He said nothing,
then laughed: the boats, the nets, the fish, the birds over the harbour in the morning light.
Every thing that was there, those brothers and sisters, the mother, the father, the generations
before them, the hills and the green fields behind the town, the bridge and the long road.
Night after night they told stories of kings and queens, of battles, of bringing home the harvest.
Somewhere in the west there were islands, and beyond them the sea, and further still, nothing.
"""

TEXT = (ENGLISH + "\n") * 20


def build_spm_tokenizer(directory: Path, vocab_size: int = 700):
    """A Llama tokenizer (Metaspace, byte fallback, BOS added) trained on ``TEXT``."""
    from wake2vec.testing import train_spm_tokenizer

    return train_spm_tokenizer(directory, [TEXT], vocab_size)


def build_byte_level_tokenizer(directory: Path, vocab_size: int = 700):
    """A GPT-2-style byte-level BPE tokenizer trained on ``TEXT``."""
    from wake2vec.testing import train_byte_level_tokenizer

    return train_byte_level_tokenizer(directory, [TEXT], vocab_size)


def build_gemma_style_tokenizer(directory: Path):
    """Gemma's pipeline (a normalizer that turns spaces into ``▁``, byte fallback)."""
    return retrained_as("GemmaTokenizer", build_spm_tokenizer(Path(directory) / "spm"), directory)


def build_qwen2_style_tokenizer(directory: Path):
    """Qwen2's pipeline (NFC, a Llama-3-style split regex, byte-level)."""
    return retrained_as(
        "Qwen2Tokenizer", build_byte_level_tokenizer(Path(directory) / "bl"), directory
    )


BUILDERS = {
    "spm": build_spm_tokenizer,
    "byte-level": build_byte_level_tokenizer,
    "gemma-style": build_gemma_style_tokenizer,
    "qwen2-style": build_qwen2_style_tokenizer,
}


# studied models' own tokenizer files (wake2vec.testing fetches them): "llama2" loads as a run
# loads it (transformers 5 rebuilds it with a Metaspace pre-tokenizer), "llama2-legacy" exactly
# as the hub file is written (Prepend + Replace normalizer, no pre-tokenizer)
REAL_KINDS = {"llama2": "llama2", "llama2-legacy": "llama2", "qwen3": "qwen3",
              "gemma2": "gemma2", "llama3_2": "llama3_2", "gpt2": "gpt2"}


def load_real_tokenizer(kind: str, folder: Path):
    """The real tokenizer of ``kind`` (a key of ``REAL_KINDS``) from its fetched ``folder``."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if kind.endswith("-legacy"):
        return PreTrainedTokenizerFast.from_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)


def build_tokenizer(kind: str, directory: Path):
    """``kind`` is one of ``BUILDERS``: ``"spm"``, ``"byte-level"``, ``"gemma-style"``, ``"qwen2-style"``."""
    return BUILDERS[kind](Path(directory))
