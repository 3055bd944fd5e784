"""Estimate the peak GPU memory of each phase of a recipe, by arithmetic on the model's
architecture numbers (no torch): will it fit the GPU, and what to change when it does not.

Every term is an estimate of what the training step holds at its peak (the backward pass):

* ``weights``: the transformer's linear layers at the load precision (NF4: ``NF4_BYTES`` per
  weight), and the embedding matrix and output head (resized for the new tokens) in 16-bit
  when the body is 4-bit, as bitsandbytes leaves embeddings and the head unquantised;
* ``dequant buffer``: a 4-bit layer is dequantised to 16-bit for each matmul; the largest one;
* ``trainable``: the parameters the phase trains, in fp32 (new input rows, plus new output
  rows when the head is untied; LoRA adapters in P2);
* ``gradients``: one fp32 gradient per trainable parameter;
* ``optimizer``: AdamW 8 bytes per parameter (two fp32 moments), 8-bit AdamW 2, Adafactor
  4 bytes per row plus 4 per column of each matrix (factored second moment, no first moment);
* ``activations``: what autograd keeps per token and layer (see ``activation_elements``),
  times batch x sequence, in the compute dtype; with gradient checkpointing, each layer's input
  plus one layer's worth recomputed during backward;
* ``logits``: batch x sequence x vocabulary in fp32, ``LOGIT_COPIES`` times (the logits the
  model returns, the log-softmax cross-entropy keeps for backward, and their gradient);
* ``cuda context``: ``CUDA_CONTEXT_GIB`` for the CUDA context, cuBLAS workspace and kernels.

The new rows exist twice: in the resized 16-bit matrices (counted in ``weights``) and as the
fp32 copies that train (``trainable``). The same formulas and constants serve every model;
nothing is tuned per model.

Calibration (tests/test_plan.py) against the study's peak VRAM at 4-bit, with 45,000 new rows,
the preset's P1 sequence, batch and optimiser, fp16 compute and gradient checkpointing, head
tied as the study tied it / untied as the model ships (estimate / reported midpoint):
TinyLlama 3.1 / 4.1 GiB vs ~4 (0.77 / 1.01); Llama-3.2-1B seq 512 4.2 vs 3-4 (1.19);
Llama-3.2-3B 5.7 (seq 256) / 6.3 (seq 512) vs 5-6 (1.03 / 1.14); Llama-3.1-8B 7.7 / 10.4 vs
9-10 (0.81 / 1.09); Qwen2.5-14B seq 128 11.6 / 15.2 vs 12-13 (0.93 / 1.22). Without
checkpointing the estimates are 10-35% higher. Qwen2.5-14B at seq 256 with its untied head
needs 15.6 GiB even with checkpointing: more than a T4's 14.5, as the study found.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

from wake2vec.errors import UserInputError
from wake2vec.presets import (
    Architecture,
)

if TYPE_CHECKING:
    pass

GIB = 1024**3

NF4_BYTES = 0.5 + 4 / 64
"""4 bits per weight plus one fp32 absmax per block of 64 (bitsandbytes' default blocksize,
no double quantisation, as wake2vec's loader asks for)."""

CUDA_CONTEXT_GIB = 0.5
"""What an idle PyTorch CUDA process holds before any tensor: context, cuBLAS workspace and
kernel images (0.4-0.6 GiB on T4/A100-class GPUs with CUDA 12)."""

LOGIT_COPIES = 3
"""fp32 vocabulary-sized tensors alive at the loss's backward: logits, log-softmax, gradient."""

DEFAULT_LORA_RANK = 8

MIN_SEQ_LEN = 64
"""The shortest sequence the advice suggests; shorter blocks cut most sentences apart."""

GPUS: dict[str, tuple[str, float]] = {
    "t4": ("NVIDIA T4 16 GB", 14.5),
    "l4": ("NVIDIA L4 24 GB", 22.0),
    "a100-40": ("NVIDIA A100 40 GB", 39.0),
    "a100-80": ("NVIDIA A100 80 GB", 78.5),
    "h100": ("NVIDIA H100 80 GB", 78.5),
}
"""GPU -> (description, GiB a process can allocate: the card's memory less driver reserve)."""

_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class ModelFacts:
    """What the estimate needs about the model."""

    label: str  # preset name or config path
    arch: Architecture
    tokenizer_entries: int  # new ids start here
    dtype: str
    quantization: str
    eager_attention: bool = False  # attention scores materialised (Gemma-2)
    lora_targets: tuple[str, ...] = ()


@dataclass(frozen=True)
class PhaseInput:
    """One phase as the estimate sees it."""

    name: str
    kind: str  # "rows" (new embedding rows train) or "lora" (adapters train, rows frozen)
    seq_len: int
    batch_size: int
    optimizer: str
    gradient_checkpointing: bool = False
    lora_rank: int = DEFAULT_LORA_RANK
    trainable_rows: int | None = None  # rows that train (one per word); None: one per new id


# --------------------------------------------------------------------------- the arithmetic


def rows_after_injection(facts: ModelFacts, new_tokens: int) -> int:
    """Embedding rows once the new tokens have ids: new ids start at the tokenizer's length, so
    padding rows are reused before the matrix grows."""
    return max(facts.arch.vocab_size, facts.tokenizer_entries + new_tokens)


def _target_shapes(arch: Architecture) -> dict[str, list[tuple[int, int]]]:
    """(in, out) of each LoRA-able linear layer of one block, by module name."""
    h, i, d = arch.hidden_size, arch.intermediate_size, arch.attention_dim
    q, kv = arch.heads * d, arch.kv_heads * d
    return {
        "q_proj": [(h, q)],
        "k_proj": [(h, kv)],
        "v_proj": [(h, kv)],
        "o_proj": [(q, h)],
        "gate_proj": [(h, i)],
        "up_proj": [(h, i)],
        "down_proj": [(i, h)],
        "qkv_proj": [(h, q + 2 * kv)],
        "gate_up_proj": [(h, 2 * i)],
        "c_attn": [(h, 3 * h)],
        "c_proj": [(h, h), (i, h)],
        "c_fc": [(h, i)],
    }


def activation_elements(arch: Architecture, seq_len: int, eager: bool) -> int:
    """Values autograd keeps per token in one block: the block input and normed input of
    attention and MLP (4 x hidden), queries, keys and values, the attention output, the MLP's
    intermediate tensors (gate, up, activation, product: 4 x intermediate; GPT-2: 2), and with
    eager attention the scores and probabilities (2 x heads x seq). With frozen weights autograd
    keeps somewhat less, so this errs high."""
    h, d = arch.hidden_size, arch.attention_dim
    attention = 2 * arch.heads * d + 2 * arch.kv_heads * d
    mlp = (4 if arch.mlp == "gated" else 2) * arch.intermediate_size
    scores = 2 * arch.heads * seq_len if eager else 0
    return 4 * h + attention + mlp + scores


def lora_params(arch: Architecture, targets: tuple[str, ...], rank: int) -> tuple[int, int]:
    """(adapter parameters, adapter matrices) over all blocks."""
    shapes = _target_shapes(arch)
    params = matrices = 0
    for name in targets:
        for n_in, n_out in shapes.get(name, []):
            params += rank * (n_in + n_out)
            matrices += 2
    return params * arch.layers, matrices * arch.layers


def _optimizer_bytes(optimizer: str, params: int, rows_plus_cols: int) -> float:
    if optimizer == "adamw":
        return 8.0 * params
    if optimizer == "adamw8bit":
        return 2.0 * params
    if optimizer == "adafactor":
        return 4.0 * rows_plus_cols
    raise UserInputError(f"unknown optimizer {optimizer!r}")


def estimate_terms(facts: ModelFacts, phase: PhaseInput, new_tokens: int) -> dict[str, float]:
    """Bytes of each term of the peak, for one phase (see the module docstring)."""
    arch = facts.arch
    h = arch.hidden_size
    compute = _DTYPE_BYTES[facts.dtype]
    nf4 = facts.quantization == "nf4"
    rows = rows_after_injection(facts, new_tokens)
    body_bytes = NF4_BYTES if nf4 else compute
    terms: dict[str, float] = {
        "weights": arch.body_linear_params() * body_bytes + arch.embedding_params(rows) * compute,
        "dequant buffer": (
            max(a * b for shapes in _target_shapes(arch).values() for a, b in shapes) * compute
            if nf4
            else 0.0
        ),
    }
    if phase.kind == "lora":
        params, matrices = lora_params(arch, facts.lora_targets, phase.lora_rank)
        rows_plus_cols = (
            sum(
                phase.lora_rank * 2 + n_in + n_out
                for name in facts.lora_targets
                for n_in, n_out in _target_shapes(arch).get(name, [])
            )
            * arch.layers
        )
    else:
        matrices = 1 if arch.tied else 2
        trained = new_tokens if phase.trainable_rows is None else phase.trainable_rows
        params = trained * h * matrices
        rows_plus_cols = (trained + h) * matrices
    terms["trainable"] = 4.0 * params
    terms["gradients"] = 4.0 * params
    terms["optimizer"] = _optimizer_bytes(phase.optimizer, params, rows_plus_cols)
    tokens = phase.batch_size * phase.seq_len
    per_layer = activation_elements(arch, phase.seq_len, facts.eager_attention)
    if phase.kind == "lora":  # each adapted layer keeps its (dropped-out) input for the adapter
        per_layer += sum(
            n_in for name in facts.lora_targets for n_in, _ in _target_shapes(arch).get(name, [])
        )
    if phase.gradient_checkpointing:
        terms["activations"] = tokens * (arch.layers * h + per_layer) * compute
    else:
        terms["activations"] = tokens * arch.layers * per_layer * compute
    terms["logits"] = LOGIT_COPIES * tokens * rows * 4.0
    terms["cuda context"] = CUDA_CONTEXT_GIB * GIB
    return terms


# --------------------------------------------------------------------------- results


@dataclass
class PhaseEstimate:
    """The estimate for one phase, in GiB, with the verdict and advice."""

    name: str
    kind: str
    seq_len: int
    batch_size: int
    optimizer: str
    gradient_checkpointing: bool
    terms_gib: dict[str, float]
    total_gib: float
    total_with_checkpointing_gib: float
    total_without_checkpointing_gib: float
    fits: bool
    advice: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """Estimates for every phase of a recipe on one GPU."""

    model: str
    dtype: str
    quantization: str
    tied: bool
    new_tokens: int
    trainable_rows: int
    rows_after_injection: int
    gpu: str
    gpu_name: str
    capacity_gib: float
    phases: list[PhaseEstimate]
    notes: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return all(p.fits for p in self.phases)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "fits": self.fits}, indent=2)


def total_gib(facts: ModelFacts, phase: PhaseInput, new_tokens: int) -> float:
    return sum(estimate_terms(facts, phase, new_tokens).values()) / GIB


def estimate_phase(
    facts: ModelFacts, phase: PhaseInput, new_tokens: int, capacity: float
) -> PhaseEstimate:
    """Estimate one phase; when it does not fit, say which single change would make it fit."""
    terms = estimate_terms(facts, phase, new_tokens)
    total = sum(terms.values()) / GIB
    with_gc = total_gib(facts, replace(phase, gradient_checkpointing=True), new_tokens)
    without_gc = total_gib(facts, replace(phase, gradient_checkpointing=False), new_tokens)
    fits = total <= capacity
    return PhaseEstimate(
        name=phase.name,
        kind=phase.kind,
        seq_len=phase.seq_len,
        batch_size=phase.batch_size,
        optimizer=phase.optimizer,
        gradient_checkpointing=phase.gradient_checkpointing,
        terms_gib={k: round(v / GIB, 3) for k, v in terms.items()},
        total_gib=round(total, 2),
        total_with_checkpointing_gib=round(with_gc, 2),
        total_without_checkpointing_gib=round(without_gc, 2),
        fits=fits,
        advice=[] if fits else advise(facts, phase, new_tokens, capacity),
    )


def advise(facts: ModelFacts, phase: PhaseInput, new_tokens: int, capacity: float) -> list[str]:
    """Single changes that bring the phase under ``capacity``, each with its estimate."""
    advice: list[str] = []

    def option(text: str, f: ModelFacts, p: PhaseInput) -> None:
        gib = total_gib(f, p, new_tokens)
        advice.append(f"{text}: {gib:.1f} GiB ({'fits' if gib <= capacity else 'still too big'})")

    seq = phase.seq_len // 2
    while (
        seq > MIN_SEQ_LEN and total_gib(facts, replace(phase, seq_len=seq), new_tokens) > capacity
    ):
        seq //= 2
    if seq >= MIN_SEQ_LEN:
        option(f"shorter sequences (data.seq_len = {seq})", facts, replace(phase, seq_len=seq))
    if phase.batch_size > 1:
        option("batch_size = 1 with a larger grad_accum", facts, replace(phase, batch_size=1))
    if facts.quantization == "none":
        option(
            'a 4-bit body (model.quantization = "nf4", model.dtype = "float16")',
            replace(
                facts,
                quantization="nf4",
                dtype="float16" if facts.dtype == "float32" else facts.dtype,
            ),
            phase,
        )
    if phase.optimizer == "adamw":
        option('Adafactor (optimizer = "adafactor")', facts, replace(phase, optimizer="adafactor"))
        option(
            '8-bit AdamW (optimizer = "adamw8bit")', facts, replace(phase, optimizer="adamw8bit")
        )
    if not phase.gradient_checkpointing:
        option(
            "gradient checkpointing, if the phase strategy offers it",
            facts,
            replace(phase, gradient_checkpointing=True),
        )
    bigger = [
        k
        for k, (_, cap) in GPUS.items()
        if cap > capacity and total_gib(facts, phase, new_tokens) <= cap
    ]
    if bigger:
        advice.append(f"or a larger GPU: {', '.join(bigger)}")
    return advice




