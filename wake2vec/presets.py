"""Presets for the studied models: hub id, family, tokenizer and tie facts, the architecture
numbers the memory planner needs, and the study's phase settings, as plain frozen data.

Architecture numbers are the published config.json values of each hub model (written here
from the public configs; see ``UNSURE`` for the few that are less certain). Phase settings
marked in ``STUDY_SOURCED`` come from the study's notes; the others are this project's
defaults for that model size and can be changed in the recipe.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from wake2vec.errors import UnknownNameError, UserInputError

TokenizerKind = Literal["sentencepiece", "byte-level"]
MlpKind = Literal["gated", "plain"]

LLAMA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
PHI3_TARGETS = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")
GPT2_TARGETS = ("c_attn", "c_proj", "c_fc")


@dataclass(frozen=True)
class Architecture:
    """The numbers of a decoder-only transformer that decide its memory use.

    ``mlp`` is "gated" for SwiGLU/GeGLU blocks (three hidden x intermediate matrices: Llama,
    Mistral, Phi-3, Qwen2, Gemma-2) and "plain" for GPT-2's two-matrix MLP."""

    hidden_size: int
    layers: int
    intermediate_size: int
    heads: int
    kv_heads: int
    vocab_size: int  # embedding rows in config.json (may exceed the tokenizer's entries)
    tied: bool  # tie_word_embeddings
    head_dim: int | None = None  # None: hidden_size // heads
    mlp: MlpKind = "gated"
    max_positions: int | None = None

    @property
    def attention_dim(self) -> int:
        """Width of one head."""
        return self.head_dim or self.hidden_size // self.heads

    def layer_linear_params(self) -> int:
        """Weights of the linear layers in one transformer block (what NF4 quantises)."""
        h, d = self.hidden_size, self.attention_dim
        attention = h * self.heads * d + 2 * h * self.kv_heads * d + self.heads * d * h
        mlp_matrices = 3 if self.mlp == "gated" else 2
        return attention + mlp_matrices * h * self.intermediate_size

    def body_linear_params(self) -> int:
        """Linear-layer weights of all blocks: the part a 4-bit load quantises."""
        return self.layers * self.layer_linear_params()

    def embedding_params(self, rows: int | None = None) -> int:
        """Input matrix, plus the output head when it is a separate matrix."""
        rows = self.vocab_size if rows is None else rows
        return rows * self.hidden_size * (1 if self.tied else 2)

    @classmethod
    def from_config(cls, config: dict[str, Any], where: str = "config.json") -> Architecture:
        """Read the numbers from a parsed config.json (Llama-style or GPT-2 key names)."""
        text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config

        def pick(*keys: str, default: Any = None) -> Any:
            for key in keys:
                if text.get(key) is not None:
                    return text[key]
            if default is not None:
                return default
            raise UserInputError(
                f"{where} has none of {', '.join(repr(k) for k in keys)}, so its memory "
                "cannot be estimated; use a preset (model.preset) instead"
            )

        hidden = int(pick("hidden_size", "n_embd", "d_model"))
        heads = int(pick("num_attention_heads", "n_head"))
        gpt2_style = "n_embd" in text and "hidden_size" not in text
        return cls(
            hidden_size=hidden,
            layers=int(pick("num_hidden_layers", "n_layer")),
            intermediate_size=int(pick("intermediate_size", "n_inner", default=4 * hidden)),
            heads=heads,
            kv_heads=int(pick("num_key_value_heads", default=heads)),
            vocab_size=int(pick("vocab_size")),
            tied=bool(text.get("tie_word_embeddings", config.get("tie_word_embeddings", True))),
            head_dim=int(text["head_dim"]) if text.get("head_dim") else None,
            mlp="plain" if gpt2_style else "gated",
            max_positions=text.get("max_position_embeddings") or text.get("n_positions"),
        )


@dataclass(frozen=True)
class PhaseSettings:
    """One phase's training settings, as a recipe's ``[[phases]]`` table would give them."""

    seq_len: int
    optimizer: Literal["adamw", "adafactor", "adamw8bit"]
    learning_rate: float
    warmup_steps: int
    steps: int
    batch_size: int
    grad_accum: int
    weight_decay: float = 0.0


@dataclass(frozen=True)
class Preset:
    """Everything wake2vec knows in advance about one studied model."""

    name: str
    hub_id: str
    family: str
    tokenizer: TokenizerKind
    tokenizer_entries: int  # len(tokenizer); new ids start here
    arch: Architecture
    lora_targets: tuple[str, ...]
    dtype: Literal["float32", "bfloat16", "float16"]
    quantization: Literal["none", "nf4"]
    p1: PhaseSettings
    p2: PhaseSettings
    attn_implementation: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def tied(self) -> bool:
        """The model's own tie setting, which wake2vec keeps."""
        return self.arch.tied

    @property
    def embedding_rows(self) -> int:
        return self.arch.vocab_size

    @property
    def padding_rows(self) -> int:
        """Embedding rows beyond the tokenizer's entries (Qwen2.5: 399, Phi-3.5: 53)."""
        return max(0, self.arch.vocab_size - self.tokenizer_entries)


# --------------------------------------------------------------------------- the data

# Architecture(hidden, layers, intermediate, heads, kv_heads, vocab_size, tied, ...) as in
# each model's config.json.
_TINYLLAMA = Architecture(2048, 22, 5632, 32, 4, 32_000, tied=False, max_positions=2048)
_LLAMA_32_1B = Architecture(2048, 16, 8192, 32, 8, 128_256, True, 64, max_positions=131_072)
_LLAMA_32_3B = Architecture(3072, 28, 8192, 24, 8, 128_256, True, 128, max_positions=131_072)
_LLAMA_31_8B = Architecture(4096, 32, 14_336, 32, 8, 128_256, False, max_positions=131_072)
_MISTRAL_7B = Architecture(4096, 32, 14_336, 32, 8, 32_768, False, 128, max_positions=32_768)
_PHI35_MINI = Architecture(3072, 32, 8192, 32, 32, 32_064, False, max_positions=131_072)
_QWEN25_14B = Architecture(5120, 48, 13_824, 40, 8, 152_064, False, max_positions=131_072)
_GEMMA2_9B = Architecture(3584, 42, 14_336, 16, 8, 256_000, True, 256, max_positions=8192)
_GPT2 = Architecture(768, 12, 3072, 12, 12, 50_257, True, mlp="plain", max_positions=1024)
_DISTILGPT2 = Architecture(768, 6, 3072, 12, 12, 50_257, True, mlp="plain", max_positions=1024)

# Micro-batches follow one rule: 1 (x 16 accumulation) for every 4-bit preset, sized for a
# 15 GB T4; 4 (x 4) for TinyLlama in fp32; 4 for the GPT-2 CPU smoke tests. Models of 7B and
# more train their new rows with Adafactor (factored state) rather than AdamW (8 bytes a value). P1 warms up for
# 100 of 3000 steps without weight decay (only the new rows train, so decay would only shrink
# them). P2 (LoRA r 8, alpha 16, dropout 0.1 in the study) trains adapters on a frozen body.
_P1_FP32 = PhaseSettings(256, "adafactor", 5e-4, 100, 3000, batch_size=4, grad_accum=4)
_P1_NF4 = PhaseSettings(256, "adamw", 2e-4, 100, 3000, batch_size=1, grad_accum=16)
_P1_NF4_LARGE = replace(_P1_NF4, optimizer="adafactor")  # 7B and up: AdamW's moments do not fit
_P1_CPU = PhaseSettings(128, "adamw", 5e-4, 10, 200, batch_size=4, grad_accum=1)
_P2_SMALL = PhaseSettings(512, "adamw", 2e-4, 50, 1000, batch_size=2, grad_accum=8)
_P2_LARGE = PhaseSettings(256, "adamw", 2e-4, 50, 1000, batch_size=1, grad_accum=16)
_P2_CPU = PhaseSettings(128, "adamw", 2e-4, 10, 200, batch_size=4, grad_accum=1)
_GATED = "gated on the hub: accept the licence and log in first"


def _preset(
    name: str,
    hub_id: str,
    family: str,
    tokenizer: TokenizerKind,
    entries: int,
    arch: Architecture,
    **rest: Any,
) -> Preset:
    """A preset with the Llama-style defaults: LoRA on all seven projections, NF4 body with
    float16 compute (T4s have no bfloat16), the 4-bit P1 and the larger P2."""
    defaults: dict[str, Any] = dict(
        lora_targets=LLAMA_TARGETS, dtype="float16", quantization="nf4", p1=_P1_NF4, p2=_P2_LARGE
    )
    return Preset(name, hub_id, family, tokenizer, entries, arch, **{**defaults, **rest})


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        _preset(
            "tinyllama-1.1b-chat",
            "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
            "llama",
            "sentencepiece",
            32_000,
            _TINYLLAMA,
            dtype="float32",
            quantization="none",
            p1=_P1_FP32,
            p2=_P2_SMALL,
        ),
        _preset(
            "tinyllama-1.1b-3t",
            "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T",
            "llama",
            "sentencepiece",
            32_000,
            _TINYLLAMA,
            dtype="float32",
            quantization="none",
            p1=_P1_FP32,
            p2=_P2_SMALL,
            notes=("the base (not chat) TinyLlama checkpoint after 3T tokens",),
        ),
        _preset(
            "llama-3.2-1b",
            "meta-llama/Llama-3.2-1B",
            "llama",
            "byte-level",
            128_256,
            _LLAMA_32_1B,
            p1=replace(_P1_NF4, seq_len=512),
            p2=_P2_SMALL,
            notes=(_GATED,),
        ),
        _preset(
            "llama-3.2-3b",
            "meta-llama/Llama-3.2-3B",
            "llama",
            "byte-level",
            128_256,
            _LLAMA_32_3B,
            notes=(_GATED,),
        ),
        _preset(
            "llama-3.1-8b",
            "meta-llama/Llama-3.1-8B",
            "llama",
            "byte-level",
            128_256,
            _LLAMA_31_8B,
            p1=_P1_NF4_LARGE,
            notes=(_GATED,),
        ),
        _preset(
            "mistral-7b-v0.3",
            "mistralai/Mistral-7B-v0.3",
            "mistral",
            "sentencepiece",
            32_768,
            _MISTRAL_7B,
            p1=_P1_NF4_LARGE,
        ),
        _preset(
            "phi-3.5-mini",
            "microsoft/Phi-3.5-mini-instruct",
            "phi3",
            "sentencepiece",
            32_011,
            _PHI35_MINI,
            lora_targets=PHI3_TARGETS,
            notes=(
                "53 padding rows: new ids start at 32011, inside the matrix",
                "fused qkv_proj and gate_up_proj: LoRA targets the fused layers",
            ),
        ),
        _preset(
            "qwen2.5-14b",
            "Qwen/Qwen2.5-14B",
            "qwen2",
            "byte-level",
            151_665,
            _QWEN25_14B,
            p1=replace(_P1_NF4, seq_len=128, optimizer="adafactor"),
            p2=replace(_P2_LARGE, seq_len=128, optimizer="adafactor"),
            notes=(
                "399 padding rows: new ids start at 151665, inside the matrix",
                "the study fitted seq 128 on a T4 with the head tied and one row per word; "
                "wake2vec keeps the untied head, trains its new output rows too and gives each "
                "word two ids (whole-word), so it needs an L4 or larger (see wake2vec plan)",
            ),
        ),
        _preset(
            "gemma-2-9b",
            "google/gemma-2-9b",
            "gemma2",
            "sentencepiece",
            256_000,
            _GEMMA2_9B,
            p1=_P1_NF4_LARGE,
            attn_implementation="eager",
            notes=("eager attention (logit soft-capping)", _GATED),
        ),
        _preset(
            "gpt2",
            "openai-community/gpt2",
            "gpt2",
            "byte-level",
            50_257,
            _GPT2,
            lora_targets=GPT2_TARGETS,
            dtype="float32",
            quantization="none",
            p1=_P1_CPU,
            p2=_P2_CPU,
            notes=("CPU smoke test",),
        ),
        _preset(
            "distilgpt2",
            "distilbert/distilgpt2",
            "gpt2",
            "byte-level",
            50_257,
            _DISTILGPT2,
            lora_targets=GPT2_TARGETS,
            dtype="float32",
            quantization="none",
            p1=_P1_CPU,
            p2=_P2_CPU,
            notes=("CPU smoke test",),
        ),
    )
}

STUDY_SOURCED: dict[str, tuple[str, ...]] = {
    "tinyllama-1.1b-chat": ("dtype", "p1.seq_len", "p1.optimizer"),
    "llama-3.2-1b": ("quantization", "p1.seq_len", "p1.optimizer", "p1.learning_rate"),
    "llama-3.2-3b": ("quantization", "p1.seq_len (study: 256-512)"),
    "llama-3.1-8b": ("quantization", "p1.seq_len"),
    "mistral-7b-v0.3": ("quantization", "p1.seq_len"),
    "phi-3.5-mini": ("quantization", "lora_targets"),
    "qwen2.5-14b": ("quantization", "p1.seq_len", "p1.optimizer"),
    "gemma-2-9b": ("quantization", "attn_implementation"),
}
"""Which settings are the study's; everything else is this project's default."""

UNSURE: dict[str, str] = {
    "qwen2.5-14b": "max_position_embeddings (131072 vs 32768 in some revisions)",
    "phi-3.5-mini": "tokenizer_entries 32011 is from the study's table, not re-counted",
}
"""Published numbers that were written from memory with less certainty."""


def preset_names(family: str | None = None) -> tuple[str, ...]:
    """Preset names, all of them or those of one family, in table order."""
    return tuple(name for name, p in PRESETS.items() if family is None or p.family == family)


def get_preset(name: str) -> Preset:
    """The preset called ``name`` (case-insensitive); an unknown name lists close matches."""
    key = name.strip().lower()
    if key in PRESETS:
        return PRESETS[key]
    by_hub_id = {p.hub_id.lower(): p for p in PRESETS.values()}
    if key in by_hub_id:
        return by_hub_id[key]
    raise UnknownNameError("model preset", name, list(PRESETS))


def validate_preset(name: str) -> Preset:
    """``get_preset`` for pydantic validators: an unknown name raises ``ValueError`` with the
    close matches, which the recipe error lists under the key that named it."""
    try:
        return get_preset(name)
    except UnknownNameError as exc:
        raise ValueError(str(exc)) from None
