"""Train only the new embedding rows: wrappers that keep them as separate fp32 parameters.

The frozen input matrix and output head keep every base row; the new rows live in their own
``nn.Parameter`` objects, so an optimiser built on them holds state for nothing else and its
weight decay cannot reach a base row. :func:`attach_rows` installs the wrappers on a model,
:func:`detach_rows` writes the trained rows back and restores the original modules.

A word may own two ids (the whole-word injector's form after a space and its bare form): both
read one trainable row (:class:`RowMap`), the bare id with a fixed shift added (the base
vocabulary's mean bare-minus-word-initial row, ``wake2vec.vocab.injection.form_shift``), as if the two
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

from wake2vec.training.head import RowHead
from wake2vec.training.rowmap import RowMap

if TYPE_CHECKING:
    from transformers import PreTrainedModel


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
