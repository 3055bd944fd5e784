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


def save_new_rows(model: PreTrainedModel, ids: list[int], words: list[str], path: Path) -> Path:
    """Write the input rows (and untied output rows) of ``ids`` with the ids and words."""
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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata={"words": json.dumps(words, ensure_ascii=False)})
    tmp.replace(path)
    return path


def load_new_rows(model: PreTrainedModel, path: Path) -> list[int]:
    """Write rows saved by :func:`save_new_rows` back into ``model``; returns their ids."""
    import torch
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    index = tensors["ids"].long()
    with torch.no_grad():
        weight = model.get_input_embeddings().weight
        weight[index] = tensors["input"].to(weight.dtype)
        head = output_matrix(model)
        if head is not None and "output" in tensors:
            head[index] = tensors["output"].to(head.dtype)
    return index.tolist()
