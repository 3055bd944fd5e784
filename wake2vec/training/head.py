"""The output head of a model whose new rows train on their own (:mod:`wake2vec.training.rows`):
base logits from the frozen matrix, new logits from the fp32 rows, and the summed next-token NLL
computed chunk by chunk with its gradients in the same pass, never holding the logits of more
than one chunk of positions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from wake2vec.training.rowmap import RowMap, _contiguous_span


class RowHead(nn.Module):
    """Output head: base logits from the frozen matrix (no weight gradient), new logits from
    ``rows`` (fp32 master copy), put together in id order.

    ``forward`` returns full fp32 logits. :meth:`nll` instead returns the summed next-token
    NLL without ever holding the logits of more than ``chunk_tokens`` positions, and computes
    its gradients as it goes (:class:`_ChunkedHeadNLL`);
    :func:`wake2vec.training.evaluate.token_nll` uses it whenever the model's logits are
    exactly this head's output.
    """

    def __init__(self, base: nn.Module, rowmap: RowMap, rows: nn.Parameter,
                 shift: torch.Tensor | None = None):
        super().__init__()
        self.base = base
        self.rows = rows
        self.rowmap = rowmap
        self.shift = None if shift is None or rowmap.alias is None else shift.float()
        self.span = _contiguous_span(rowmap.ids)
        self.register_buffer("new_ids", rowmap.ids.clone(), persistent=False)
        self.targets: torch.Tensor | None = None  # set by token_nll: forward computes the NLL
        self.capture = False  # keep the next forward's output in .result (the probe)
        self.result: torch.Tensor | None = None
        self.fusable: bool | None = None  # the model's logits are this head's output (probed once)
        self.original: torch.Tensor | None = None  # the weight's new rows before staging
        self.staged: torch.Tensor | None = None  # the owners' rows in the weight's dtype (paired)

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.targets is not None:
            self.result = self.nll(hidden, self.targets)
            return hidden.new_zeros((*hidden.shape[:-1], 0))  # no logits: the NLL is in .result
        logits = self._logits(hidden)
        if self.capture:
            self.result = logits
        return logits

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        weight = self.base.weight
        bias = getattr(self.base, "bias", None)
        new_bias = None if bias is None else bias[self.new_ids].float()
        new = F.linear(hidden.float(), self.rows)
        if self.rowmap.slots is not None:  # an alias's logit is its owner row's (plus shift)
            new = new.index_select(-1, self.rowmap.slots)
            if self.shift is not None:
                along = hidden.float() @ self.shift.to(hidden.device)
                new = new + along.unsqueeze(-1) * self.rowmap.alias.squeeze(1)
        if new_bias is not None:
            new = new + new_bias
        if self.span is None:  # scattered ids: compute every base logit, then overwrite
            logits = F.linear(hidden, weight, bias).float()
            return logits.index_copy(-1, self.new_ids, new)
        lo, hi = self.span  # contiguous ids: never compute logits for the stale rows
        parts = []
        if lo > 0:
            parts.append(F.linear(hidden, weight[:lo], None if bias is None else bias[:lo]).float())
        parts.append(new)
        if hi < weight.shape[0]:
            parts.append(F.linear(hidden, weight[hi:], None if bias is None else bias[hi:]).float())
        return torch.cat(parts, dim=-1) if len(parts) > 1 else new

    def can_fuse(self) -> bool:
        """Whether :meth:`nll` applies: a plain floating-point linear base head."""
        weight = getattr(self.base, "weight", None)
        return (
            isinstance(self.base, nn.Linear)
            and weight is not None
            and weight.dtype in (torch.float32, torch.bfloat16, torch.float16)
        )

    def nll(
        self, hidden: torch.Tensor, targets: torch.Tensor, chunk_tokens: int = 0
    ) -> torch.Tensor:
        """Summed NLL (fp32 scalar) of ``targets`` (same leading shape as ``hidden``; -100 is
        ignored) under this head's logits, never holding the logits of more than
        ``chunk_tokens`` positions (0: about 32M logits per chunk).

        Products run in the frozen weight's dtype (bf16 for a bf16 model): the fp32 rows are
        copied into the weight's stale new rows first (:meth:`stage`), so one product covers
        the whole vocabulary. The softmax of each chunk is formed in that dtype and its
        gradient is accumulated into fp32 for the rows.
        """
        weight = self.base.weight
        if chunk_tokens <= 0:
            chunk_tokens = max(32, (1 << 25) // weight.shape[0])
        self.stage()
        return _ChunkedHeadNLL.apply(
            hidden.to(weight.dtype), self.rows, self, targets.reshape(-1), chunk_tokens
        )

    @property
    def paired(self) -> bool:
        """Whether :meth:`nll` computes the owners' products only (contiguous new ids with
        aliases): an alias's logit is its owner's plus the hidden state's product with the shift,
        so its row's product is never formed."""
        return self.span is not None and self.rowmap.slots is not None

    def stage(self) -> None:
        """Copy the current rows (rounded to the weight's dtype) where :meth:`nll` reads them:
        for :attr:`paired` ids into ``staged`` (one row per owner), otherwise into the frozen
        weight's new rows (the first time keeping the rows found there, so :meth:`unstage` can
        put them back)."""
        weight = self.base.weight
        with torch.no_grad():
            if self.paired:
                self.staged = self.rows.detach().to(weight.dtype)
            elif self.span is not None:
                lo, hi = self.span
                if self.original is None:
                    self.original = weight[lo:hi].clone()
                weight[lo:hi] = self.rowmap.expand(self.rows.detach(), self.shift).to(weight.dtype)
            else:
                if self.original is None:
                    self.original = weight[self.new_ids].clone()
                rows = self.rowmap.expand(self.rows.detach(), self.shift)
                weight.index_copy_(0, self.new_ids, rows.to(weight.dtype))

    def unstage(self) -> None:
        """Put back the weight's new rows as they were before the first :meth:`stage`."""
        if self.original is None:
            return
        with torch.no_grad():
            self.base.weight.index_copy_(0, self.new_ids, self.original)
        self.original = None


class _ChunkedHeadNLL(torch.autograd.Function):
    """Head product, softmax and NLL chunk by chunk of positions, with the gradients for the
    hidden states and the rows computed in the same pass (so no logits are kept for the
    backward pass) and scaled by the incoming gradient in ``backward``. Expects the rows staged
    in the head's weight (:meth:`RowHead.stage`)."""

    @staticmethod
    def forward(ctx, hidden, rows, head, targets, chunk_tokens):  # noqa: D102
        weight = head.base.weight
        bias = getattr(head.base, "bias", None)
        dtype, dim = weight.dtype, hidden.shape[-1]
        flat = hidden.detach().reshape(-1, dim)
        keep = (targets != -100).nonzero().squeeze(1)
        want_hidden, want_rows = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        want_any = want_hidden or want_rows
        grad_hidden = torch.zeros_like(flat) if want_hidden else None
        # the rows' logit gradients of all chunks, gathered for one product at the end
        new_grads = (
            torch.empty((len(keep), rows.shape[0]), dtype=dtype, device=flat.device)
            if want_rows
            else None
        )
        total = torch.zeros((), dtype=torch.float32, device=flat.device)
        n_chunks = -(-len(keep) // chunk_tokens)
        chunk_tokens = -(-len(keep) // max(1, n_chunks))  # equal chunks, no small remainder
        for start in range(0, len(keep), max(1, chunk_tokens)):
            picked = keep[start : start + chunk_tokens]
            h = flat.index_select(0, picked)
            t = targets.index_select(0, picked).unsqueeze(1)
            logits = _paired_logits(head, h) if head.paired else F.linear(h, weight, bias)
            probs = torch.softmax(logits, dim=1)
            chosen = probs.gather(1, t).float()
            lost = chosen == 0  # the target's probability underflowed: use the exact form
            if bool(lost.any()):
                rows_lost = lost.squeeze(1).nonzero().squeeze(1)
                exact = logits[rows_lost].float()
                nll_lost = torch.logsumexp(exact, dim=1) - exact.gather(1, t[rows_lost]).squeeze(1)
                total += nll_lost.sum()
                chosen[rows_lost] = 1.0
            total -= chosen.log().sum()
            del logits
            if not want_any:
                continue
            grad = probs  # d(sum NLL)/d(logits) = softmax - one_hot(target), in place
            at = (torch.arange(len(picked), device=t.device), t.squeeze(1))
            grad[at] = grad[at] - 1.0
            per_row = None
            if want_rows or head.paired:
                if head.span is not None:
                    per_id = grad[:, head.span[0] : head.span[1]]
                else:
                    per_id = grad.index_select(1, head.new_ids)
                per_row = head.rowmap.fold(per_id)  # an alias's gradient is its owner's
            if want_hidden:
                back = _paired_back(head, grad, per_row) if head.paired else grad @ weight
                grad_hidden.index_copy_(0, picked, back)
            if want_rows:
                new_grads[start : start + len(picked)] = per_row
            del grad, probs
        grad_rows = None
        if want_rows:
            grad_rows = (new_grads.t() @ flat.index_select(0, keep)).float()
            del new_grads
        ctx.save_for_backward(*(g for g in (grad_hidden, grad_rows) if g is not None))
        ctx.shapes = (hidden.shape, want_hidden, want_rows)
        return total

    @staticmethod
    def backward(ctx, grad_total):  # noqa: D102
        shape, want_hidden, want_rows = ctx.shapes
        saved = list(ctx.saved_tensors)
        grad_hidden = grad_rows = None
        if want_hidden:
            found = saved.pop(0)
            grad_hidden = (found * grad_total.to(found.dtype)).view(shape)
        if want_rows:
            grad_rows = saved.pop(0) * grad_total
        return grad_hidden, grad_rows, None, None, None


def _paired_logits(head: RowHead, h: torch.Tensor) -> torch.Tensor:
    """The head's logits for ``h`` in the weight's dtype, with the owners' products from the
    staged rows and each alias's logit its owner's plus ``h . shift``."""
    weight, bias = head.base.weight, getattr(head.base, "bias", None)
    lo, hi = head.span
    rowmap = head.rowmap
    new = F.linear(h, head.staged).index_select(1, rowmap.slots)
    if head.shift is not None:
        shift = head.shift.to(device=h.device, dtype=h.dtype)
        new = new + (h @ shift).unsqueeze(1) * rowmap.alias.squeeze(1).to(h.dtype)
    if bias is not None:
        new = new + bias[lo:hi]
    parts = [new]
    if lo > 0:
        parts.insert(0, F.linear(h, weight[:lo], None if bias is None else bias[:lo]))
    if hi < weight.shape[0]:
        parts.append(F.linear(h, weight[hi:], None if bias is None else bias[hi:]))
    return torch.cat(parts, dim=1) if len(parts) > 1 else new


def _paired_back(head: RowHead, grad: torch.Tensor, per_row: torch.Tensor) -> torch.Tensor:
    """``grad @ W`` for the logits of :func:`_paired_logits`, with the new ids' part taken
    through the owners' rows (``per_row``: the gradient folded onto them) and the shift."""
    weight = head.base.weight
    lo, hi = head.span
    back = per_row @ head.staged
    if lo > 0:
        back = back + grad[:, :lo] @ weight[:lo]
    if hi < weight.shape[0]:
        back = back + grad[:, hi:] @ weight[hi:]
    if head.shift is not None:
        aliases = grad[:, lo:hi] @ head.rowmap.alias.to(grad.dtype)  # (tokens, 1)
        back = back + aliases * head.shift.to(device=grad.device, dtype=grad.dtype)
    return back
