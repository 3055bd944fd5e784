"""The LM loss of a frozen output head without the full-vocabulary logits.

A phase that trains the model's body but not its output matrix (LoRA, P2) would otherwise form
logits for every position and every id at once: at batch 4 x 256 and a 138,000-id vocabulary
(SmolLM2 with the Wake lexicon) that is 566 MB in fp32, held several times over by the softmax
and its gradient. :func:`frozen_loss_head` puts :class:`LossHead` in the head's place for the
phase: when :func:`wake2vec.training.evaluate.token_nll` hands it the targets it computes the
summed NLL chunk by chunk, with the hidden states' gradient formed in the same pass (the matrix
is frozen, so nothing else needs one), and never holds more than one chunk's logits.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

CHUNK_LOGITS = 1 << 25  # logits per chunk (128 MiB in fp32)


class LossHead(nn.Module):
    """Wraps a frozen ``nn.Linear`` head. With ``targets`` set, ``forward`` returns no logits
    and leaves the summed NLL in ``result``; otherwise it is the head itself (``capture`` keeps
    the output in ``result``, for the probe that checks the model returns it unchanged)."""

    def __init__(self, base: nn.Linear):
        super().__init__()
        self.base = base
        self.targets: torch.Tensor | None = None
        self.capture = False
        self.result: torch.Tensor | None = None
        self.fusable: bool | None = None

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    def can_fuse(self) -> bool:
        return True

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.targets is not None:
            flat = hidden.reshape(-1, hidden.shape[-1])
            chunk = max(16, CHUNK_LOGITS // self.base.weight.shape[0])
            self.result = _FrozenHeadNLL.apply(flat, self.base.weight, self.base.bias,
                                               self.targets.reshape(-1), chunk)
            return hidden.new_zeros((*hidden.shape[:-1], 0))
        logits = self.base(hidden)
        if self.capture:
            self.result = logits
        return logits


class _FrozenHeadNLL(torch.autograd.Function):
    """Summed NLL over chunks of positions; the gradient for ``hidden`` is formed per chunk in
    the forward pass, (softmax - one-hot) @ weight, and scaled in backward."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk):  # noqa: D102
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad = torch.zeros_like(hidden) if ctx.needs_input_grad[0] else None
        for lo in range(0, hidden.shape[0], chunk):
            hi = min(hidden.shape[0], lo + chunk)
            wanted = targets[lo:hi]
            valid = wanted != -100
            if not bool(valid.any()):
                continue
            picks = wanted.clamp(min=0).unsqueeze(1)
            logits = F.linear(hidden[lo:hi], weight, bias).float()
            norm = torch.logsumexp(logits, dim=-1)
            total += ((norm - logits.gather(1, picks).squeeze(1)) * valid).sum()
            if grad is not None:
                probs = torch.exp(logits.sub_(norm.unsqueeze(1)))  # in place: one chunk held
                probs.scatter_add_(1, picks, -torch.ones_like(picks, dtype=probs.dtype))
                probs.mul_(valid.unsqueeze(1))
                grad[lo:hi] = (probs.to(weight.dtype) @ weight).to(grad.dtype)
        ctx.save_for_backward(grad if grad is not None else total.new_zeros(0))
        ctx.has_grad = grad is not None
        return total

    @staticmethod
    def backward(ctx, grad_total):  # noqa: D102
        (grad,) = ctx.saved_tensors
        found = grad * grad_total.to(grad.dtype) if ctx.has_grad else None
        return found, None, None, None, None


def _owner(model: nn.Module) -> Any:
    """The transformers model under peft and DDP wrappers (the one whose head is swapped)."""
    inner = model
    while True:
        if isinstance(getattr(inner, "module", None), nn.Module):
            inner = inner.module
        elif hasattr(inner, "get_base_model"):
            inner = inner.get_base_model()
        else:
            return inner


@contextmanager
def frozen_loss_head(model: nn.Module) -> Iterator[LossHead | None]:
    """Within the block the model's output head is a :class:`LossHead`, when the head is a
    plain frozen ``nn.Linear``; the original module is back afterwards (the same weight object,
    so a tied head stays tied)."""
    owner = _owner(model)
    get_head = getattr(owner, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    if (not isinstance(head, nn.Linear) or head.weight.requires_grad
            or (head.bias is not None and head.bias.requires_grad)
            or not hasattr(owner, "set_output_embeddings")):
        yield None
        return
    wrapper = LossHead(head)
    owner.set_output_embeddings(wrapper)
    try:
        yield wrapper
    finally:
        owner.set_output_embeddings(head)


@contextmanager
def lean_training(model: nn.Module, gradient_checkpointing: bool) -> Iterator[None]:
    """A phase's training in less memory: the frozen head's loss without full logits
    (:func:`frozen_loss_head`) and, when asked, activations recomputed in the backward pass
    (transformers' gradient checkpointing, non-reentrant, so frozen inputs need no grad);
    both undone afterwards."""
    owner = _owner(model)
    checkpoint = gradient_checkpointing and getattr(owner, "supports_gradient_checkpointing", False)
    kwargs = {"use_reentrant": False}
    if checkpoint:  # transformers 5 renamed it; 4.x has only the older name
        if hasattr(owner, "activation_checkpointing_enable"):
            owner.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            owner.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    try:
        with frozen_loss_head(model):
            yield
    finally:
        if checkpoint:
            (getattr(owner, "activation_checkpointing_disable", None)
             or owner.gradient_checkpointing_disable)()
