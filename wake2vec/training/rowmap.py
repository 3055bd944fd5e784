"""Which trainable row each new id reads: one row per word, a word's second spelling (an alias)
reading its owner's row plus a fixed shift (see :mod:`wake2vec.training.rows`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


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
