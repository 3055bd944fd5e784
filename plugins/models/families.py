"""Model families for the studied architectures (Llama, Mistral, Phi-3, Qwen2, Gemma-2, GPT-2):
each detected by config.json's ``model_type``, loaded with its quirks, and filled in from a
preset when the recipe names one."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from pydantic import Field, field_validator

from wake2vec import api, hookimpl
from wake2vec.errors import UserInputError
from wake2vec.modeling import find_lora_targets, load_pretrained, read_model_type
from wake2vec.presets import (
    GPT2_TARGETS,
    LLAMA_TARGETS,
    PHI3_TARGETS,
    Preset,
    get_preset,
    preset_names,
    validate_preset,
)


class FamilyParams(api.Params):
    """Parameters shared by every studied family."""

    family: ClassVar[str] = ""
    preset: str | None = Field(
        None,
        description="the recipe's model.preset (e.g. 'llama-3.2-1b'), passed on by the runner: "
        "hub id and defaults",
    )

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str | None) -> str | None:
        if value is None:
            return None
        preset = validate_preset(value)
        if preset.family != cls.family:
            raise ValueError(
                f"preset {preset.name!r} is a {preset.family} model, not {cls.family}; "
                f'set model.family = "{preset.family}" (presets of {cls.family}: '
                f"{', '.join(preset_names(cls.family)) or 'none'})"
            )
        return preset.name


class StudiedFamily(api.ModelFamily):
    """Base of the studied families (not registered itself)."""

    name: ClassVar[str] = ""
    presets: ClassVar[tuple[str, ...]] = ()  # shown by list-plugins
    load_kwargs: ClassVar[dict[str, Any]] = {}  # extra from_pretrained arguments
    Params: ClassVar[type[FamilyParams]] = FamilyParams

    @property
    def preset(self) -> Preset | None:
        name = getattr(self.params, "preset", None)
        return get_preset(name) if name else None

    def source(self, request: api.ModelRequest) -> str:
        """The hub id or directory to load: the recipe's model.name, else the preset's hub id."""
        if request.name:
            return request.name
        if self.preset is not None:
            return self.preset.hub_id
        raise UserInputError(
            f"model family {self.name!r} needs model.name (a hub id or a saved model directory) "
            f"or model.preset (one of: {', '.join(self.presets)})"
        )

    def _check_model_type(self, model_type: str | None, where: str) -> None:
        if model_type is not None and model_type not in self.model_types:
            raise UserInputError(
                f"{where} is a {model_type!r} model, but model.family is {self.name!r} "
                f"(which loads {', '.join(self.model_types)}); remove model.family to detect it, "
                "or pick the matching family"
            )

    def load(self, request: api.ModelRequest) -> api.LoadedModel:
        source = self.source(request)
        self._check_model_type(read_model_type(source), source)
        loaded = load_pretrained(
            source,
            family=self.name,
            dtype=request.dtype,
            quantization=request.quantization,
            trust_remote_code=request.trust_remote_code,
            lora_targets=self.lora_targets,
            extra=dict(self.load_kwargs) or None,
            tokenizer_ready=request.tokenizer_ready,
        )
        self._check_model_type(getattr(loaded.model.config, "model_type", None), source)
        notes = list(loaded.notes)
        targets = self._targets(loaded.model, notes)
        notes += self._preset_notes(request, loaded)
        return dataclasses.replace(loaded, lora_targets=targets, notes=notes)

    def _targets(self, model: Any, notes: list[str]) -> tuple[str, ...]:
        """The family's LoRA targets that exist in ``model``; whatever fits when none do."""
        present = find_lora_targets(model, self.lora_targets)
        missing = [t for t in self.lora_targets if t not in present]
        if not missing:
            return present
        if present:
            notes.append(
                f"LoRA targets {', '.join(missing)} are not in this model; using {', '.join(present)}"
            )
            return present
        found = find_lora_targets(model)
        notes.append(
            f"none of the {self.name} LoRA targets ({', '.join(self.lora_targets)}) are in this "
            f"model; using {', '.join(found) or 'none'}"
        )
        return found

    def _preset_notes(self, request: api.ModelRequest, loaded: api.LoadedModel) -> list[str]:
        """Where the recipe or the loaded model differs from the preset."""
        preset = self.preset
        if preset is None:
            return []
        notes = [f"preset {preset.name}: {preset.hub_id}"]
        if request.name and request.name != preset.hub_id:
            notes.append(f"preset {preset.name}: loading {request.name} instead of {preset.hub_id}")
        if (request.dtype, request.quantization) != (preset.dtype, preset.quantization):
            notes.append(
                f"preset {preset.name} suggests dtype {preset.dtype}, quantization "
                f"{preset.quantization}; the recipe asks for {request.dtype}, {request.quantization}"
            )
        if loaded.tied != preset.tied:
            notes.append(
                f"preset {preset.name} is {'tied' if preset.tied else 'untied'} but the loaded "
                f"model is {'tied' if loaded.tied else 'untied'}; following the loaded model"
            )
        return notes


def _params(family: str) -> type[FamilyParams]:
    """A Params model that accepts only ``family``'s presets."""
    return type(
        f"{family.title()}Params", (FamilyParams,), {"family": family, "__module__": __name__}
    )


class LlamaFamily(StudiedFamily):
    """Llama: TinyLlama and Llama 3.x, SentencePiece-style or byte-level tokenizers."""

    name: ClassVar[str] = "llama"
    model_types: ClassVar[tuple[str, ...]] = ("llama",)
    lora_targets: ClassVar[tuple[str, ...]] = LLAMA_TARGETS
    presets: ClassVar[tuple[str, ...]] = preset_names("llama")
    Params = _params("llama")


class MistralFamily(StudiedFamily):
    """Mistral, with a SentencePiece-style tokenizer."""

    name: ClassVar[str] = "mistral"
    model_types: ClassVar[tuple[str, ...]] = ("mistral",)
    lora_targets: ClassVar[tuple[str, ...]] = LLAMA_TARGETS
    presets: ClassVar[tuple[str, ...]] = preset_names("mistral")
    Params = _params("mistral")


class Phi3Family(StudiedFamily):
    """Phi-3 with fused qkv_proj and gate_up_proj, and padding rows past the tokenizer."""

    name: ClassVar[str] = "phi3"
    model_types: ClassVar[tuple[str, ...]] = ("phi3",)
    lora_targets: ClassVar[tuple[str, ...]] = PHI3_TARGETS
    presets: ClassVar[tuple[str, ...]] = preset_names("phi3")
    Params = _params("phi3")


class Qwen2Family(StudiedFamily):
    """Qwen2 / Qwen2.5, with padding rows past the tokenizer."""

    name: ClassVar[str] = "qwen2"
    model_types: ClassVar[tuple[str, ...]] = ("qwen2",)
    lora_targets: ClassVar[tuple[str, ...]] = LLAMA_TARGETS
    presets: ClassVar[tuple[str, ...]] = preset_names("qwen2")
    Params = _params("qwen2")


class Gemma2Family(StudiedFamily):
    """Gemma-2, loaded with eager attention for its logit soft-capping."""

    name: ClassVar[str] = "gemma2"
    model_types: ClassVar[tuple[str, ...]] = ("gemma2",)
    lora_targets: ClassVar[tuple[str, ...]] = LLAMA_TARGETS
    presets: ClassVar[tuple[str, ...]] = preset_names("gemma2")
    load_kwargs: ClassVar[dict[str, Any]] = {"attn_implementation": "eager"}
    Params = _params("gemma2")


class Gpt2Family(StudiedFamily):
    """GPT-2 with Conv1D projections, for CPU smoke tests."""

    name: ClassVar[str] = "gpt2"
    model_types: ClassVar[tuple[str, ...]] = ("gpt2",)
    lora_targets: ClassVar[tuple[str, ...]] = GPT2_TARGETS
    presets: ClassVar[tuple[str, ...]] = preset_names("gpt2")
    Params = _params("gpt2")


FAMILIES: tuple[type[StudiedFamily], ...] = (
    LlamaFamily,
    MistralFamily,
    Phi3Family,
    Qwen2Family,
    Gemma2Family,
    Gpt2Family,
)


@hookimpl
def wake2vec_register_model_families() -> list[type]:
    return list(FAMILIES)
