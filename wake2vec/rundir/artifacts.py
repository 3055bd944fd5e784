"""Saving and restoring the new embedding rows of a model (safetensors, by id)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel


def output_matrix(model: PreTrainedModel) -> torch.Tensor | None:
    """The output head's weight when it is a separate matrix, else None (tied or absent)."""
    head = model.get_output_embeddings()
    if head is None or head.weight is model.get_input_embeddings().weight:
        return None
    return head.weight


def save_new_rows(model: PreTrainedModel, ids: list[int], words: list[str], path: Path,
                  aliases: dict[int, int] | None = None,
                  shifts: dict[str, torch.Tensor | None] | None = None) -> Path:
    """Write the input rows (and untied output rows) of ``ids`` with the ids and words; with
    ``aliases`` (id -> the id in ``ids`` whose row it reads) the pairs and each matrix's shift
    (``Injection.alias_shift``) too, so that :func:`load_new_rows` restores every id's row."""
    import json

    import torch
    from safetensors.torch import save_file

    index = torch.tensor(ids, dtype=torch.long)
    tensors = {
        "ids": index,
        "input": model.get_input_embeddings().weight.detach()[index].float().cpu().contiguous(),
    }
    head = output_matrix(model)
    if head is not None:
        tensors["output"] = head.detach()[index].float().cpu().contiguous()
    if aliases:
        pairs = sorted(aliases.items())
        tensors["alias_ids"] = torch.tensor([a for a, _ in pairs], dtype=torch.long)
        tensors["alias_owners"] = torch.tensor([o for _, o in pairs], dtype=torch.long)
        for side in ("input", "output") if head is not None else ("input",):
            if (shifts or {}).get(side) is not None:
                tensors[f"alias_shift_{side}"] = shifts[side].float().cpu().contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata={"words": json.dumps(words, ensure_ascii=False)})
    tmp.replace(path)
    return path


def alias_pairs(tensors: dict[str, torch.Tensor]) -> dict[int, int]:
    """The ``alias -> owner`` pairs stored by :func:`save_new_rows` (empty when none)."""
    if "alias_ids" not in tensors:
        return {}
    return dict(zip(tensors["alias_ids"].tolist(), tensors["alias_owners"].tolist(), strict=True))


def load_new_rows(model: PreTrainedModel, path: Path) -> list[int]:
    """Write rows saved by :func:`save_new_rows` (or a checkpoint's trainable tensors) back
    into ``model``; an alias id gets its owner's row plus the saved shift. Returns the ids
    that own a row."""
    import torch
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    index = tensors["ids"].long()
    position = {int(i): n for n, i in enumerate(index.tolist())}
    pairs = alias_pairs(tensors)
    alias_index = torch.tensor(list(pairs), dtype=torch.long)
    owner_rows = torch.tensor([position[o] for o in pairs.values()], dtype=torch.long)

    def put(matrix: torch.Tensor, rows: torch.Tensor, side: str) -> None:
        matrix[index] = rows.to(matrix.dtype)
        if pairs:
            shifted = rows[owner_rows]
            shift = tensors.get(f"alias_shift_{side}")
            if shift is not None:
                shifted = shifted + shift
            matrix[alias_index] = shifted.to(matrix.dtype)

    with torch.no_grad():
        put(model.get_input_embeddings().weight, tensors["input"], "input")
        head = output_matrix(model)
        if head is not None and "output" in tensors:
            put(head, tensors["output"], "output")
    return index.tolist()
