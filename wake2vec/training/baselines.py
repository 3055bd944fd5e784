"""The two reference points of a run, measured on the whole validation text: the untouched base
model with its own tokenizer (before injection), and the injected model before its first step
(step 0). Both use the same validation bytes as every phase (the split is made on the text,
before tokenising), so their bits per byte compare with every phase's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wake2vec.training.evaluate import evaluate

if TYPE_CHECKING:
    from torch import nn

    from wake2vec.training.data import DataBundle

KEYS = ("val_loss", "perplexity", "bits_per_byte", "uniform_loss", "val_tokens", "val_bytes")
BASE, INJECTED = "base", "injected"


def measure(model: nn.Module, bundle: DataBundle, batch_size: int, vocab_size: int) -> dict[str, Any]:
    """``model`` on every validation block of ``bundle``, on the device it sits on."""
    import torch

    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    found = evaluate(model, bundle.val_tensor(), list(bundle.val_blocks["n_bytes"]), batch_size,
                     vocab_size, 0, device, lengths=bundle.val_lengths())
    return {key: found[key] for key in KEYS}


def against(bits_per_byte: float | None, baselines: dict[str, Any]) -> dict[str, float] | None:
    """How far ``bits_per_byte`` lies below (negative) or above the untouched model's, in bits
    per byte and relative; None without both numbers."""
    base = (baselines.get(BASE) or {}).get("bits_per_byte")
    if not isinstance(bits_per_byte, (int, float)) or not isinstance(base, (int, float)) or not base:
        return None
    return {"bits_per_byte": bits_per_byte - base, "relative": (bits_per_byte - base) / base}
