"""Tiny models, tokenizers, corpora and phase contexts for the data and training tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from wake2vec.api import PhaseContext
from wake2vec.recipe.schema import DataSpec, PhaseSpec

NEW_WORDS = ["riverrun", "commodius", "vicus", "recirculation", "Howth", "Dublin", "penisolate"]

_LINES = [
    "riverrun, past Eve and Adam's, from swerve of shore to bend of bay,",
    "brings us by a commodius vicus of recirculation back to Howth Castle and Environs.",
    "Sir Tristram, violer d'amores, fr'over the short sea, had passencore rearrived",
    "from North Armorica on this side the scraggy isthmus of Europe Minor",
    "to wielderfight his penisolate war: nor had topsawyer's rocks",
    "by the stream Oconee exaggerated themselse to Laurens County's gorgios",
    "while they went doublin their mumper all the time in Dublin.",
]


def corpus_text(paragraphs: int = 40) -> str:
    """A repetitive text of numbered paragraphs (so every span is distinguishable)."""
    parts = []
    for p in range(paragraphs):
        lines = [_LINES[(p + i) % len(_LINES)] for i in range(3)]
        parts.append(f"Paragraph {p}.\n" + "\n".join(lines))
    return "\n\n".join(parts) + "\n"


def train_tokenizer(text: str, vocab_size: int = 300, bos: bool = True):
    """A byte-level BPE tokenizer trained on ``text``, wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = ["<s>", "</s>"] if bos else ["</s>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(text.splitlines(), trainer=trainer)
    kwargs: dict[str, Any] = {"eos_token": "</s>"}
    if bos:
        kwargs["bos_token"] = "<s>"
    return PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)


def tiny_model(vocab_size: int, tied: bool, seed: int = 0, dtype: torch.dtype = torch.float32):
    """A 2-layer, hidden-32 Llama with random weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=tied,
    )
    return LlamaForCausalLM(config).to(dtype)


def inject(model, tokenizer, words: list[str] = NEW_WORDS, seed: int = 1) -> list[int]:
    """Add ``words`` as tokens, grow the matrices and give the new rows random values."""
    base = len(tokenizer)
    tokenizer.add_tokens(words)
    new_ids = list(range(base, len(tokenizer)))
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for matrix in {
            id(m): m
            for m in (model.get_input_embeddings().weight, model.get_output_embeddings().weight)
        }.values():
            rows = torch.randn(len(new_ids), matrix.shape[1], generator=generator) * 0.02
            matrix[new_ids] = rows.to(matrix.dtype)
    return new_ids


@dataclass
class RecordingEvents:
    """Stands in for ``PhaseEvents``: remembers every call."""

    evaluations: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[tuple[int, Path]] = field(default_factory=list)

    def evaluation(self, step: int, metrics: dict[str, Any]) -> None:
        self.evaluations.append({"step": step, **metrics})

    def checkpoint_saved(self, step: int, path: Path) -> None:
        assert path.is_dir(), "checkpoint reported before it exists"
        self.checkpoints.append((step, path))


def data_spec(corpus: Path, **overrides: Any) -> DataSpec:
    settings = {
        "corpus": corpus,
        "lexicon": corpus.with_name("lexicon.txt"),
        "seq_len": 32,
        "validation_fraction": 0.1,
    }
    settings.update(overrides)
    return DataSpec(**settings)


def phase_spec(**overrides: Any) -> PhaseSpec:
    settings = {
        "strategy": "embed-only",
        "steps": 6,
        "learning_rate": 5e-3,
        "batch_size": 2,
        "grad_accum": 1,
        "scheduler": "constant",
        "max_grad_norm": 1.0,
    }
    settings.update(overrides)
    return PhaseSpec(**settings)


@dataclass
class Setup:
    """A tiny injected model with its tokenizer, data and new ids."""

    model: Any
    tokenizer: Any
    new_ids: list[int]
    data: Any
    base_vocab_size: int
    tied: bool


def build_setup(
    tmp_path: Path,
    tied: bool,
    text: str | None = None,
    dtype: torch.dtype = torch.float32,
    seq_len: int = 32,
    **data_overrides: Any,
) -> Setup:
    from wake2vec.training.data import prepare_data

    text = text or corpus_text()
    tmp_path.mkdir(parents=True, exist_ok=True)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(text, encoding="utf-8")
    tokenizer = train_tokenizer(text)
    base = len(tokenizer)
    model = tiny_model(base, tied, dtype=dtype)
    new_ids = inject(model, tokenizer)
    data = prepare_data(
        data_spec(corpus, seq_len=seq_len, **data_overrides), tokenizer, tmp_path / "cache", seed=0
    )
    return Setup(model, tokenizer, new_ids, data, base, tied)


def make_ctx(
    setup: Setup, out_dir: Path, resume: bool = False, seed: int = 0, **train_overrides: Any
) -> PhaseContext:
    return PhaseContext(
        name="p1",
        index=0,
        model=setup.model,
        tokenizer=setup.tokenizer,
        new_ids=setup.new_ids,
        base_vocab_size=setup.base_vocab_size,
        tied=setup.tied,
        lora_targets=(),
        train=phase_spec(**train_overrides),
        data=setup.data,
        out_dir=out_dir,
        seed=seed,
        resume=resume,
        events=RecordingEvents(),
        new_words=list(NEW_WORDS),
    )


def snapshot(model) -> dict[str, torch.Tensor]:
    """A copy of every parameter, by name."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}
