"""Validation: loss in nats per predicted token, perplexity, bits per byte, and the uniform baseline."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn


def token_nll(model: nn.Module, input_ids: torch.Tensor,
              lengths: list[int] | None = None) -> tuple[torch.Tensor, int]:
    """Sum of next-token negative log-likelihoods over ``input_ids`` (fp32, with grad when
    grad is enabled) and the number of predicted tokens. ``lengths[i]`` ids of row ``i`` are
    text; the rest is padding at the end, which a causal model's earlier positions never see
    and which predicts nothing.

    When the new rows are installed (:class:`wake2vec.training.head.RowHead`) and the model's
    logits are exactly the head's output, the head computes the NLL chunk by chunk
    (:meth:`RowHead.nll`): the full-vocabulary logits never exist at once; a frozen head
    wrapped for a phase (:class:`wake2vec.training.loss_head.LossHead`) does the same.
    Otherwise the model's logits go through plain cross-entropy.
    """
    import torch.nn.functional as F

    # the last position predicts nothing: mask its target instead of slicing the logits, which
    # would make autograd fill a zero tensor as large as the logits on every backward pass
    targets = input_ids.roll(-1, dims=1)
    targets[:, -1] = -100
    count = input_ids.shape[0] * (input_ids.shape[1] - 1)
    if lengths is not None:
        for row, length in enumerate(lengths):
            if length < input_ids.shape[1]:
                targets[row, length - 1 :] = -100
                count -= input_ids.shape[1] - length
    head = _fused_head(model, input_ids)
    if head is not None:
        head.targets = targets
        try:
            model(input_ids=input_ids, use_cache=False)
            nll = head.result
        finally:
            head.targets, head.result = None, None
        return nll, count
    logits = model(input_ids=input_ids, use_cache=False).logits
    nll = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(),
        targets.reshape(-1),
        ignore_index=-100,
        reduction="sum",
    )
    return nll, count


def _fused_head(model: nn.Module, input_ids: torch.Tensor) -> Any:
    """The model's :class:`RowHead` or :class:`LossHead` when its NLL can replace the logits,
    else None.

    Whether the model hands the head's output on unchanged (no soft-capping or scaling after
    the head) is probed once per head with a two-token forward pass in eval mode, without
    touching the random state.
    """
    import torch

    from wake2vec.training.head import RowHead
    from wake2vec.training.loss_head import LossHead

    inner = model
    while isinstance(getattr(inner, "module", None), torch.nn.Module):  # DDP and similar
        inner = inner.module
    get_head = getattr(inner, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    if not isinstance(head, (RowHead, LossHead)):
        return None
    if head.fusable is None:
        head.fusable = False
        if head.can_fuse():
            was_training = inner.training
            inner.eval()
            head.capture = True
            try:
                with torch.no_grad(), torch.random.fork_rng(devices=[]):
                    out = inner(input_ids=input_ids[:1, :2], use_cache=False)
                head.fusable = out.logits is head.result
            finally:
                head.capture, head.result = False, None
                inner.train(was_training)
    return head if head.fusable else None


def summarise(nll_sum: float, n_tokens: int, n_bytes: int, vocab_size: int) -> dict[str, Any]:
    """Turn a summed NLL into the reported metrics."""
    loss = nll_sum / n_tokens
    return {
        "val_loss": loss,
        "perplexity": math.exp(loss) if loss < 700 else math.inf,
        "bits_per_byte": nll_sum / n_bytes / math.log(2) if n_bytes else math.nan,
        "uniform_loss": math.log(vocab_size),
        "val_tokens": n_tokens,
        "val_bytes": n_bytes,
    }


def evaluate(
    model: nn.Module,
    blocks: torch.Tensor,
    block_bytes: list[int],
    batch_size: int,
    vocab_size: int,
    max_batches: int = 0,
    device: Any = None,
    *,
    lengths: list[int] | None = None,
    shard: tuple[int, int] = (0, 1),
    reduce_sum: Callable[[list[float]], list[float]] | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` on validation ``blocks`` (blocks x seq_len ids).

    ``block_bytes[i]`` is the UTF-8 byte count of the text block ``i`` predicts;
    ``max_batches`` > 0 uses only the first that many batches (the same ones every time).
    ``lengths[i]`` (default: all) ids of block ``i`` are text, the rest padding.
    ``vocab_size`` (the tokenizer's length) gives ``uniform_loss`` = ln(vocab_size), the loss of
    a uniform guess. The model is put back in the training mode it was in.

    With several processes, ``shard = (index, count)`` makes this process evaluate its
    contiguous share of the chosen blocks, and ``reduce_sum`` (summing a list of floats over the
    processes) combines the shares, so every process returns the metrics of all the blocks.
    """
    import torch

    n = len(blocks) if max_batches <= 0 else min(len(blocks), max_batches * batch_size)
    index, count = shard
    lo_block, hi_block = n * index // count, n * (index + 1) // count
    was_training = model.training
    model.eval()
    total, n_tokens = 0.0, 0
    try:
        with torch.no_grad():
            for lo in range(lo_block, hi_block, batch_size):
                batch = blocks[lo : min(hi_block, lo + batch_size)]
                if device is not None:
                    batch = batch.to(device)
                hi = min(hi_block, lo + batch_size)
                nll, count = token_nll(model, batch, None if lengths is None else lengths[lo:hi])
                total += float(nll)
                n_tokens += count
    finally:
        model.train(was_training)
    if reduce_sum is not None:
        total, tokens = reduce_sum([total, float(n_tokens)])
        n_tokens = int(round(tokens))
    return summarise(total, n_tokens, int(sum(block_bytes[:n])), vocab_size)




FRIED = "fried"  # training and validation loss rising together: a learning rate too high
FRIED_TRAIN_RISE = 0.01  # relative rise of the training loss that counts for "fried"


def regime(previous: dict[str, Any] | None, current: dict[str, Any], tolerance: float = 1e-3) -> str:
    """Label an evaluation from the trend since the previous one: the phase's previous
    evaluation, or for its first one the point it started from (``val_loss``, and the training
    loss of its first step as ``train_loss``).

    ``improving``: validation loss fell by more than ``tolerance`` (relative). ``fried``:
    validation loss rose by more than ``tolerance`` and the training loss by more than
    :data:`FRIED_TRAIN_RISE` (a training loss is a few batches' mean, or for a phase's first
    evaluation compared with its first step alone, so a smaller rise is batch noise). ``overfitting``:
    validation loss rose while the training loss did not. ``plateau``: anything else. Without
    a point to compare with (no baseline), an evaluation counts as improving.
    """
    if previous is None or previous.get("val_loss") is None:
        return "improving"
    before, after = previous["val_loss"], current["val_loss"]
    change = (after - before) / max(abs(before), 1e-12)
    if change < -tolerance:
        return "improving"
    train_before, train_after = previous.get("train_loss"), current.get("train_loss")
    train_change = 0.0
    if train_before is not None and train_after is not None:
        train_change = (train_after - train_before) / max(abs(train_before), 1e-12)
    if change > tolerance:
        return FRIED if train_change > FRIED_TRAIN_RISE else "overfitting"
    return "plateau"
