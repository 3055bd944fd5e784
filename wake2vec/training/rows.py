"""Train only the new embedding rows: wrappers that keep them as separate fp32 parameters.

The frozen input matrix and output head keep every base row; the new rows live in their own
``nn.Parameter`` objects, so an optimiser built on them holds state for nothing else and its
weight decay cannot reach a base row. :func:`attach_rows` installs the wrappers on a model,
:func:`detach_rows` writes the trained rows back and restores the original modules.

A word may own two ids (the whole-word injector's form after a space and its bare form): both
read one trainable row (:class:`RowMap`), the bare id with a fixed shift added (the base
vocabulary's mean bare-minus-word-initial row, ``wake2vec.injection.form_shift``), as if the two
matrix rows were one shared parameter: every occurrence's gradient reaches the one row, and the
head tells the spellings apart by the hidden state's product with the shift, as it does for
its own words.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from transformers import PreTrainedModel


@dataclass
class RowMap:
    """Which trainable row each new id reads. ``row_ids`` own one row each (in that order);
    an alias id (a second spelling of a word) reads its owner's row."""

    row_ids: torch.Tensor  # ids that own a row, sorted
    ids: torch.Tensor  # every new id (owners and aliases), sorted
    slots: torch.Tensor | None  # per id of ``ids``, its row; None when there are no aliases
    alias: torch.Tensor | None = None  # per id of ``ids``: 1.0 for an alias, else 0.0 (column)

    @classmethod
    def build(cls, row_ids: list[int], aliases: dict[int, int] | None = None) -> RowMap:
        aliases = {int(a): int(o) for a, o in (aliases or {}).items()}
        owners = sorted({int(i) for i in row_ids})
        slot_of = {i: n for n, i in enumerate(owners)}
        missing = sorted({o for o in aliases.values() if o not in slot_of})
        if missing or set(aliases) & set(slot_of):
            raise ValueError(f"aliases must point at row owners (not {missing[:5]}) and not be owners")
        ids = sorted(set(owners) | set(aliases))
        slots = alias = None
        if aliases:
            slots = torch.tensor([slot_of.get(i, slot_of.get(aliases.get(i, -1), -1)) for i in ids])
            alias = torch.tensor([[float(i in aliases)] for i in ids])
        return cls(torch.tensor(owners, dtype=torch.long), torch.tensor(ids, dtype=torch.long),
                   slots, alias)

    def to(self, device: torch.device) -> RowMap:
        return RowMap(*(None if t is None else t.to(device)
                        for t in (self.row_ids, self.ids, self.slots, self.alias)))

    def table(self, n_rows: int) -> torch.Tensor:
        """``table[id]`` is the row that ``id`` reads, or -1 for a base id."""
        table = torch.full((n_rows,), -1, dtype=torch.long, device=self.ids.device)
        table[self.ids] = (torch.arange(len(self.ids), device=self.ids.device)
                           if self.slots is None else self.slots)
        return table

    def expand(self, rows: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
        """One row per id of :attr:`ids`: an owner's row, for an alias its owner's plus
        ``shift`` (the matrix's bare-spelling shift)."""
        if self.slots is None:
            return rows
        rows = rows.index_select(0, self.slots)
        return rows if shift is None else rows + self.alias.to(rows.dtype) * shift.to(rows)

    def fold(self, per_id: torch.Tensor) -> torch.Tensor:
        """Columns per id of :attr:`ids` summed into columns per row (the gradient of
        :meth:`expand`, along dimension 1)."""
        if self.slots is None:
            return per_id
        out = per_id.new_zeros((per_id.shape[0], len(self.row_ids)))
        return out.index_add_(1, self.slots, per_id)


def _contiguous_span(new_ids: torch.Tensor) -> tuple[int, int] | None:
    first = int(new_ids[0])
    if torch.equal(new_ids.cpu(), torch.arange(first, first + len(new_ids))):
        return first, first + len(new_ids)
    return None


class RowEmbedding(nn.Module):
    """Input embedding: base rows from the frozen module, new rows from ``rows`` (fp32; an
    alias id reads its owner's row plus ``shift``)."""

    def __init__(self, base: nn.Module, rowmap: RowMap, rows: nn.Parameter,
                 shift: torch.Tensor | None = None):
        super().__init__()
        self.base = base
        self.rows = rows
        self.register_buffer("slots", rowmap.table(base.weight.shape[0]), persistent=False)
        shifted = None  # per base-matrix row: 1.0 where an alias adds the shift
        if shift is not None and rowmap.alias is not None:
            shifted = torch.zeros(base.weight.shape[0], device=rowmap.ids.device)
            shifted[rowmap.ids] = rowmap.alias.squeeze(1)
            shift = shift.float().to(rows.device)
        self.register_buffer("shifted", shifted, persistent=False)
        self.register_buffer("shift", shift if shifted is not None else None, persistent=False)
        # scaled embeddings (Gemma 3) multiply inside forward; apply the same scale to new rows
        self.scale = getattr(base, "embed_scale", None)

    @property
    def weight(self) -> torch.Tensor:
        """The frozen matrix (its new rows are stale until :func:`detach_rows`)."""
        return self.base.weight

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        out = self.base(input_ids)
        slots = self.slots[input_ids]
        is_new = slots >= 0
        if not bool(is_new.any()):
            return out
        new = F.embedding(slots.clamp(min=0), self.rows)
        if self.shift is not None:
            new = new + self.shifted[input_ids].unsqueeze(-1) * self.shift
        if self.scale is not None:
            new = (
                new * self.scale.to(new.dtype) if torch.is_tensor(self.scale) else new * self.scale
            )
        return torch.where(is_new.unsqueeze(-1), new.to(out.dtype), out)


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


@dataclass
class RowHandles:
    """The trainable new rows installed on a model, and what is needed to take them off."""

    new_ids: list[int]  # the ids that own a row, in row order
    rowmap: RowMap
    input_rows: nn.Parameter
    output_rows: nn.Parameter | None  # separate output rows (untied head); None when tied
    original_input: nn.Module
    original_output: nn.Module | None
    requires_grad: dict[str, bool] = field(default_factory=dict)
    shifts: dict[str, torch.Tensor | None] = field(default_factory=dict)  # "input", "output"

    def parameters(self) -> list[nn.Parameter]:
        """The trainable tensors, input rows first."""
        return [self.input_rows] + ([self.output_rows] if self.output_rows is not None else [])

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The trainable tensors (fp32, CPU; the parameters themselves when they already are,
        so a checkpoint of 45,000 rows costs no copy) with the ids, for checkpoints."""
        tensors = {
            "ids": torch.tensor(self.new_ids, dtype=torch.long),
            "input": self.input_rows.detach().float().cpu(),
        }
        if self.output_rows is not None:
            tensors["output"] = self.output_rows.detach().float().cpu()
        if self.rowmap.slots is not None:  # as save_new_rows writes them: alias -> owner id
            owners = self.rowmap.row_ids.cpu()[self.rowmap.slots.cpu()]
            alias = self.rowmap.ids.cpu() != owners
            tensors["alias_ids"] = self.rowmap.ids.cpu()[alias]
            tensors["alias_owners"] = owners[alias]
            sides = ("input", "output") if self.output_rows is not None else ("input",)
            for side in sides:
                if self.shifts.get(side) is not None:
                    tensors[f"alias_shift_{side}"] = self.shifts[side].float().cpu()
        return tensors

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore rows saved by :meth:`state_tensors`; the ids must match."""
        if tensors["ids"].tolist() != self.new_ids:
            raise ValueError("the saved rows belong to different token ids")
        with torch.no_grad():
            self.input_rows.copy_(tensors["input"])
            if self.output_rows is not None:
                if "output" not in tensors:
                    raise ValueError("the saved rows have no output rows but the head is untied")
                self.output_rows.copy_(tensors["output"])


def attach_rows(
    model: PreTrainedModel, new_ids: list[int], tied: bool, aliases: dict[int, int] | None = None,
    shifts: dict[str, torch.Tensor | None] | None = None,
) -> RowHandles:
    """Freeze every parameter of ``model`` and install trainable fp32 copies of the new rows:
    one per id of ``new_ids``; each id in ``aliases`` reads (and trains) its owner's row plus
    ``shifts["input"]`` (input side) or ``shifts["output"]`` (an untied head's side).

    With ``tied`` the head's new logits come from the input rows; otherwise the head's own new
    rows train as a second parameter. Undo with :func:`detach_rows`.
    """
    if not new_ids:
        raise ValueError("no new token ids to train")
    rowmap = RowMap.build(new_ids, aliases)
    ids = rowmap.row_ids.tolist()
    embed = model.get_input_embeddings()
    head = model.get_output_embeddings()
    n_rows = embed.weight.shape[0]
    every = rowmap.ids.tolist()
    if every[0] < 0 or every[-1] >= n_rows:
        raise ValueError(
            f"new ids run from {every[0]} to {every[-1]} but the embedding has {n_rows} rows"
        )
    requires_grad = {name: p.requires_grad for name, p in model.named_parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    index = rowmap.row_ids
    device = embed.weight.device
    input_rows = nn.Parameter(embed.weight.detach()[index.to(device)].float().clone())
    output_rows = None
    if head is not None and not tied:
        output_rows = nn.Parameter(
            head.weight.detach()[index.to(head.weight.device)].float().clone()
        )
    shifts = {"input": (shifts or {}).get("input"),
              "output": (shifts or {}).get("output" if output_rows is not None else "input")}
    model.set_input_embeddings(RowEmbedding(embed, rowmap.to(device), input_rows, shifts["input"]))
    if head is not None:
        rows = output_rows if output_rows is not None else input_rows
        model.set_output_embeddings(
            RowHead(head, rowmap.to(head.weight.device), rows, shifts["output"]))
    return RowHandles(ids, rowmap, input_rows, output_rows, embed, head, requires_grad, shifts)


def write_rows(
    model: PreTrainedModel,
    handles: RowHandles,
    input_matrix: torch.Tensor | None = None,
    output_matrix: torch.Tensor | None = None,
) -> None:
    """Copy the trained rows into the model's matrices (an alias's rows are its owner's);
    base rows are not touched."""
    input_matrix = handles.original_input.weight if input_matrix is None else input_matrix
    if output_matrix is None and handles.original_output is not None:
        output_matrix = handles.original_output.weight
    rowmap = handles.rowmap
    with torch.no_grad():
        index = rowmap.ids.to(input_matrix.device)  # owners and aliases alike
        input_matrix[index] = rowmap.expand(
            handles.input_rows.detach(), handles.shifts.get("input")
        ).to(input_matrix.device, input_matrix.dtype)
        if output_matrix is not None and output_matrix is not input_matrix:
            source = handles.output_rows if handles.output_rows is not None else handles.input_rows
            index = index.to(output_matrix.device)
            output_matrix[index] = rowmap.expand(source.detach(), handles.shifts.get("output")).to(
                output_matrix.device, output_matrix.dtype)


def detach_rows(
    model: PreTrainedModel, handles: RowHandles, write_back: bool = True
) -> PreTrainedModel:
    """Write the rows back (unless ``write_back`` is false), restore the original embedding
    modules and the parameters' ``requires_grad`` flags; returns the plain model."""
    head = model.get_output_embeddings()
    if isinstance(head, RowHead):  # rows staged in the frozen weight: trained or put back
        if write_back:
            head.original = None
        else:
            head.unstage()
    if write_back:
        write_rows(model, handles)
    model.set_input_embeddings(handles.original_input)
    if handles.original_output is not None:
        model.set_output_embeddings(handles.original_output)
    for name, p in model.named_parameters():
        p.requires_grad_(handles.requires_grad.get(name, False))
    return model
