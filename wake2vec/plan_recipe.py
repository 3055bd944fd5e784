"""``wake2vec plan``'s inputs from a recipe, without loading a model: the architecture numbers of
a preset or of a local ``config.json``, the injector's new ids and trainable rows for the
recipe's lexicon, and each phase; then the estimates of :mod:`wake2vec.plan`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wake2vec.errors import UserInputError
from wake2vec.plan import (
    DEFAULT_LORA_RANK,
    GPUS,
    ModelFacts,
    PhaseInput,
    Plan,
    estimate_phase,
    rows_after_injection,
)
from wake2vec.presets import (
    GPT2_TARGETS,
    LLAMA_TARGETS,
    PHI3_TARGETS,
    PRESETS,
    Architecture,
    Preset,
    get_preset,
)

if TYPE_CHECKING:
    from wake2vec.recipe.schema import Recipe

DEFAULT_NEW_TOKENS = 45_000
"""The study's lexicon size, used when the recipe's lexicon cannot be read."""

EAGER_MODEL_TYPES = ("gemma2",)
"""Architectures that wake2vec loads with eager attention (scores kept for backward)."""


def model_facts(recipe: Recipe) -> tuple[ModelFacts, list[str]]:
    """The model's numbers from its preset (model.preset, or the preset whose hub id is
    model.name), else from a local config.json."""
    spec = recipe.model
    notes: list[str] = []
    preset = get_preset(spec.preset) if spec.preset else _preset_by_hub_id(spec.name)
    if preset is not None:
        notes.append(f"architecture numbers from preset {preset.name} ({preset.hub_id})")
        return ModelFacts(
            preset.name,
            preset.arch,
            preset.tokenizer_entries,
            spec.dtype,
            spec.quantization,
            eager_attention=preset.attn_implementation == "eager",
            lora_targets=preset.lora_targets,
        ), notes
    config_path = Path(spec.name).expanduser() / "config.json" if spec.name else None
    if config_path is None or not config_path.is_file():
        what = (
            f"model.name {spec.name!r} is not a local directory with config.json"
            if spec.name
            else f"model family {spec.family!r} has no model.name"
        )
        raise UserInputError(
            f"cannot plan memory: the recipe names no preset (model.preset) and {what}; "
            "set a preset or point model.name at a saved model directory"
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserInputError(f"{config_path} cannot be read as JSON: {exc}") from None
    if not isinstance(config, dict):
        raise UserInputError(f"{config_path} must hold a JSON object")
    arch = Architecture.from_config(config, str(config_path))
    entries = _tokenizer_entries(config_path.parent) or arch.vocab_size
    notes.append(f"architecture read from {config_path}")
    return ModelFacts(
        str(config_path),
        arch,
        entries,
        spec.dtype,
        spec.quantization,
        eager_attention=config.get("model_type") in EAGER_MODEL_TYPES,
        lora_targets=_default_targets(config, arch),
    ), notes


def _preset_by_hub_id(name: str | None) -> Preset | None:
    """The preset whose hub id is ``name`` (case-insensitive), if any."""
    if not name:
        return None
    return next((p for p in PRESETS.values() if p.hub_id.lower() == name.lower()), None)


def _default_targets(config: dict[str, Any], arch: Architecture) -> tuple[str, ...]:
    if arch.mlp == "plain":
        return GPT2_TARGETS
    return PHI3_TARGETS if config.get("model_type") == "phi3" else LLAMA_TARGETS


def _tokenizer_entries(directory: Path) -> int | None:
    """len(tokenizer) from a saved tokenizer.json (vocabulary plus added tokens), if present."""
    path = directory / "tokenizer.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        ids = set((data.get("model") or {}).get("vocab", {}).values())
        ids |= {t["id"] for t in data.get("added_tokens", [])}
        return max(ids) + 1 if ids else None
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return None


def ids_per_word(injector: str) -> tuple[int, int]:
    """New token ids (embedding rows and head outputs) and trainable rows the injector gives
    each word: its class's ``ids_per_word`` and ``rows_per_word`` when it declares them, else
    1 and the ids."""
    from wake2vec.errors import UnknownNameError
    from wake2vec.registry import get_registry

    try:
        impl = get_registry().get("injector", injector).impl
    except UnknownNameError:
        impl = None
    ids = getattr(impl, "ids_per_word", None)
    ids = int(ids) if isinstance(ids, int) else 1
    rows = getattr(impl, "rows_per_word", None)
    return ids, int(rows) if isinstance(rows, int) else ids


def count_new_tokens(recipe: Recipe) -> tuple[int, int, str]:
    """New ids and trainable rows the run would add: lexicon entries times the injector's ids
    and rows per word (upper bounds: words the base tokenizer already encodes as one token are
    skipped)."""
    from wake2vec.vocab.lexicon import load_lexicon

    injector = recipe.injection.injector.name
    per_word, rows_per_word = ids_per_word(injector)
    try:
        words = len(load_lexicon(recipe.data.lexicon, recipe.data.encoding).words)
        where = f"from {recipe.data.lexicon}"
    except (OSError, UserInputError):
        words, where = DEFAULT_NEW_TOKENS, "assumed (the lexicon cannot be read)"
    return words * per_word, words * rows_per_word, (
        f"{words:,} lexicon words {where} x {per_word} id{'s' if per_word != 1 else ''} per word "
        f"({injector} injector) = {words * per_word:,} new ids, {words * rows_per_word:,} "
        f"trainable rows"
    )


def plan_recipe(
    recipe: Recipe,
    gpu: str = "t4",
    new_tokens: int | None = None,
    gradient_checkpointing: bool = False,
) -> Plan:
    """Estimate every phase of ``recipe`` on ``gpu``. A phase whose strategy name contains
    "lora" trains adapters (rows frozen); any other phase trains the new rows. A phase counts as
    checkpointed when ``gradient_checkpointing`` is set or the phase (or its params) say so."""
    if gpu not in GPUS:
        raise UserInputError(f"unknown GPU {gpu!r} (choose from {', '.join(GPUS)})")
    facts, notes = model_facts(recipe)
    trainable_rows = new_tokens
    if new_tokens is None:
        new_tokens, trainable_rows, note = count_new_tokens(recipe)
        notes.append(note)
    gpu_name, capacity = GPUS[gpu]
    if facts.arch.max_positions and recipe.data.seq_len > facts.arch.max_positions:
        notes.append(
            f"data.seq_len {recipe.data.seq_len} exceeds the model's {facts.arch.max_positions} positions"
        )
    phases = []
    for spec in recipe.phases:
        params = spec.params or {}
        kind = "lora" if "lora" in spec.strategy else "rows"
        phase = PhaseInput(
            name=spec.name,
            kind=kind,
            seq_len=recipe.data.seq_len,
            batch_size=spec.batch_size,
            optimizer=spec.optimizer,
            gradient_checkpointing=gradient_checkpointing or spec.gradient_checkpointing
            or bool(params.get("gradient_checkpointing", False)),
            lora_rank=int(params.get("r", params.get("rank", DEFAULT_LORA_RANK))),
            trainable_rows=trainable_rows,
        )
        phases.append(estimate_phase(facts, phase, new_tokens, capacity))
    return Plan(
        model=facts.label,
        dtype=facts.dtype,
        quantization=facts.quantization,
        tied=facts.arch.tied,
        new_tokens=new_tokens,
        trainable_rows=trainable_rows,
        rows_after_injection=rows_after_injection(facts, new_tokens),
        gpu=gpu,
        gpu_name=gpu_name,
        capacity_gib=capacity,
        phases=phases,
        notes=notes,
    )
