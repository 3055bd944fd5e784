"""The ``auto`` model family: any causal LM transformers can load, by hub id or directory."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from wake2vec import api, hookimpl
from wake2vec.errors import UserInputError
from wake2vec.modeling import find_lora_targets, load_pretrained


class AutoFamily(api.ModelFamily):
    """Any causal LM that transformers can load from a hub id or directory."""

    name: ClassVar[str] = "auto"
    model_types: ClassVar[tuple[str, ...]] = ()  # the fallback, never chosen by model_type

    class Params(api.Params):
        pass

    def load(self, request: api.ModelRequest) -> api.LoadedModel:
        if not request.name:
            raise UserInputError(
                "model family 'auto' needs model.name: a hub id or a saved model directory"
            )
        loaded = load_pretrained(
            request.name,
            family=self.name,
            dtype=request.dtype,
            quantization=request.quantization,
            trust_remote_code=request.trust_remote_code,
            tokenizer_ready=request.tokenizer_ready,
        )
        targets = find_lora_targets(loaded.model)
        if not targets:
            loaded.notes.append(
                "no usual LoRA target modules found; phases that use LoRA need explicit targets"
            )
        return dataclasses.replace(loaded, lora_targets=targets)


@hookimpl
def wake2vec_register_model_families() -> list[type]:
    return [AutoFamily]
