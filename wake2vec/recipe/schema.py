"""The recipe schema: pydantic models that forbid unknown keys and carry every default."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
REGIMES = ("improving", "plateau", "overfitting", "fried")  # evaluation labels (training.evaluate)
START_PATTERN = (r"^(best|last|[A-Za-z0-9][A-Za-z0-9._-]*:(best|last|step-[0-9]+|regime=("
                 + "|".join(REGIMES) + r")))$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class PluginRef(Strict):
    """A plugin chosen by name, with its own parameters (validated once the name resolves)."""

    name: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


class RegularizerRef(PluginRef):
    """An auxiliary loss and its weight in the total loss."""

    weight: float = Field(default=1.0, ge=0.0, allow_inf_nan=False)


class RunSpec(Strict):
    name: str = Field(pattern=_NAME_PATTERN, max_length=120)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    deterministic: bool = True  # torch deterministic algorithms: same seed, same bits (a little slower)
    output_dir: Path | None = None  # default: runs/<name> under the current directory
    mirror_dir: Path | None = None  # a copy kept in sync as the run goes (e.g. a mounted drive)
    # after the run, a sibling run <run dir>-control: the same recipe on the base tokenizer with
    # no injection and without the phases that train only the new rows
    control: bool = False


class ModelSpec(Strict):
    family: str | None = None  # detected from config.json when omitted; a preset sets it
    name: str | None = None  # hub id or local directory; default: the preset's hub id
    preset: str | None = None  # a studied model (wake2vec/presets.py), e.g. "llama-3.2-1b"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    quantization: Literal["none", "nf4"] = "none"
    trust_remote_code: bool = False
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str | None) -> str | None:
        from wake2vec.presets import validate_preset

        return None if value is None else validate_preset(value).name

    @field_validator("params")
    @classmethod
    def _no_params_preset(cls, value: dict[str, Any]) -> dict[str, Any]:
        if "preset" in value:
            raise ValueError(
                "the preset is no longer a family parameter: write model.preset = "
                f'"{value["preset"]}" instead of model.params.preset'
            )
        return value

    @model_validator(mode="after")
    def _resolve_preset(self) -> ModelSpec:
        if self.preset is not None:
            from wake2vec.presets import get_preset

            preset = get_preset(self.preset)
            if self.family is not None and self.family != preset.family:
                raise ValueError(
                    f"model.preset {preset.name!r} is a {preset.family} model but model.family is "
                    f"{self.family!r}; remove model.family (the preset sets it)"
                )
            self.family = preset.family
            if self.name is None:
                self.name = preset.hub_id
        if self.family is None and self.name is None:
            raise ValueError(
                "give model.name (a hub id or directory), model.preset or model.family"
            )
        return self

    def family_params(self) -> dict[str, Any]:
        """The model family plugin's parameters: ``params``, plus the preset when one is named
        (the studied families take it as their ``preset`` parameter)."""
        return {**self.params, "preset": self.preset} if self.preset else dict(self.params)


class DataSpec(Strict):
    corpus: Path
    lexicon: Path
    morphemes: Path | None = None
    morpheme_groups: Path | None = None
    device_groups: Path | None = None
    encoding: str = "utf-8"
    validation_fraction: float = Field(default=0.1, gt=0.0, lt=0.5)
    seq_len: int = Field(default=256, ge=8, le=131_072)
    lexicon_in_training: bool = False  # append lexicon lines to the training text (never validation)
    synthetic_sentences: int = Field(default=0, ge=0, le=16)  # template sentences per lexicon word, train only

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown text encoding {value!r}") from None
        return value


class InjectionSpec(Strict):
    injector: PluginRef = Field(default_factory=lambda: PluginRef(name="whole-word"))
    initializer: PluginRef = Field(default_factory=lambda: PluginRef(name="spherical"))


class PhaseSpec(Strict):
    """One training phase: a strategy plus the training settings every strategy shares."""

    name: str = Field(default="", pattern=r"^$|" + _NAME_PATTERN, max_length=60)
    strategy: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    # "best"/"last": the previous phase's state; "<phase>:best|last|step-N|regime=LABEL": the new
    # rows of that checkpoint of an earlier row-training phase (a regime branch)
    start_from: str = Field(default="best", alias="from", pattern=START_PATTERN)
    steps: int = Field(gt=0, le=10_000_000)
    learning_rate: float = Field(gt=0.0, le=10.0, allow_inf_nan=False)
    batch_size: int = Field(default=4, ge=1, le=65_536)
    grad_accum: int = Field(default=1, ge=1, le=4096)
    warmup_steps: int = Field(default=0, ge=0)
    scheduler: Literal["constant", "linear", "cosine"] = "cosine"
    optimizer: Literal["adamw", "adafactor", "adamw8bit"] = "adamw"
    weight_decay: float = Field(default=0.0, ge=0.0, allow_inf_nan=False)
    max_grad_norm: float = Field(default=1.0, ge=0.0, allow_inf_nan=False)
    # recompute each layer's activations in the backward pass: much less memory, about a third
    # more time per step
    gradient_checkpointing: bool = False
    eval_every: int = Field(default=0, ge=0)  # 0: only at the end
    eval_batches: int = Field(default=0, ge=0)  # 0: the whole validation text
    save_every: int = Field(default=0, ge=0)  # 0: at every evaluation
    keep_last: int = Field(default=2, ge=1)
    snapshot_every: int = Field(default=0, ge=0)  # keep the new rows every N steps (wake2vec trajectory)
    snapshot_rows: int = Field(default=0, ge=0)  # 0: every new row; N: the same seeded N in each snapshot
    patience: int | None = Field(default=None, ge=1)
    # skip up to N batches whose loss is not finite (no update); 0 stops at the first
    skip_nonfinite: int = Field(default=0, ge=0, le=1_000_000)
    regularizers: list[RegularizerRef] = Field(default_factory=list)

    @model_validator(mode="after")
    def _warmup_fits(self) -> PhaseSpec:
        if self.warmup_steps > self.steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) exceeds steps ({self.steps})")
        return self


class GenerationSpec(Strict):
    """Generation probes: samples from fixed prompts at several temperatures, with measures."""

    enabled: bool = True
    prompts: list[str] = Field(default_factory=lambda: ["riverrun, past Eve and Adam's,"], min_length=1)
    temperatures: list[float] = Field(default_factory=lambda: [0.5, 0.7, 0.9, 1.0, 1.2], min_length=1)
    max_new_tokens: int = Field(default=60, ge=1, le=4096)
    samples_per_setting: int = Field(default=1, ge=1, le=100)
    top_k: int = Field(default=0, ge=0)  # 0: sample from the whole vocabulary
    every_phase: bool = True  # probe after each phase; false: after the last only

    @field_validator("prompts")
    @classmethod
    def _non_empty_prompts(cls, value: list[str]) -> list[str]:
        for i, prompt in enumerate(value):
            if not prompt.strip():
                raise ValueError(f"prompt {i} is empty")
        return value

    @field_validator("temperatures")
    @classmethod
    def _positive_temperatures(cls, value: list[float]) -> list[float]:
        for t in value:
            if not (0.0 < t <= 10.0):  # also rejects NaN
                raise ValueError(f"temperature {t} is outside (0, 10]")
        return value


class AnalysisSpec(Strict):
    metrics: list[PluginRef] = Field(
        default_factory=lambda: [PluginRef(name=n) for n in ("norms", "isotropy", "drift")]
    )
    generation: GenerationSpec = Field(default_factory=GenerationSpec)
    # evaluate the untouched base model (its own tokenizer) and the injected model before the
    # first step on the whole validation text: two more evaluation passes
    baselines: bool = True


class ReportSpec(Strict):
    html: bool = True
    title: str | None = None


class Recipe(Strict):
    """A whole study: what to load, what to inject, how to train and what to measure."""

    run: RunSpec
    model: ModelSpec
    data: DataSpec
    injection: InjectionSpec = Field(default_factory=InjectionSpec)
    phases: list[PhaseSpec] = Field(min_length=1)
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)
    report: ReportSpec = Field(default_factory=ReportSpec)

    def parents(self) -> list[int | None]:
        """Per phase, the index of the phase it continues (see :func:`phase_parents`)."""
        return phase_parents([(p.name, p.start_from) for p in self.phases])

    @model_validator(mode="after")
    def _phase_names(self) -> Recipe:
        seen: set[str] = set()
        for i, phase in enumerate(self.phases):
            if not phase.name:
                phase.name = f"p{i + 1}"
            if phase.name in seen:
                raise ValueError(f"phase name {phase.name!r} is used twice")
            source = phase.start_from.split(":", 1)[0] if ":" in phase.start_from else None
            if source is not None and source not in seen:
                earlier = ", ".join(sorted(seen)) or "none"
                raise ValueError(f"phase {phase.name!r} starts from {phase.start_from!r}, but {source!r} "
                                 f"is not an earlier phase (earlier: {earlier})")
            seen.add(phase.name)
        return self


def phase_parents(phases: list[tuple[str, str]]) -> list[int | None]:
    """For each ``(name, from)`` in recipe order, the index of the phase it continues: the one
    its ``from`` names ("p1:best"), else the phase before it; None for the first. A phase whose
    parent is not the one just before it is a *branch*: it starts from the model as that earlier
    phase left it, not from what the phases between did."""
    index = {name: i for i, (name, _) in enumerate(phases)}
    return [index.get(start.split(":", 1)[0]) if ":" in start else (i - 1 if i else None)
            for i, (_, start) in enumerate(phases)]


def recipe_phase_starts(recipe: dict[str, Any]) -> list[tuple[str, str]]:
    """``(name, from)`` of each phase of a recipe as a dict (a manifest's ``recipe``), with the
    defaults the schema fills in (name ``p<n>``, from ``best``)."""
    specs = [p for p in recipe.get("phases") or [] if isinstance(p, dict)]
    return [(p.get("name") or f"p{i + 1}", str(p.get("from") or "best")) for i, p in enumerate(specs)]


def lineage(parents: list[int | None], index: int) -> list[int]:
    """The phases whose results the model of phase ``index`` is built on, first to last
    (``index`` itself included)."""
    chain = []
    at: int | None = index
    while at is not None:
        chain.append(at)
        at = parents[at]
    return chain[::-1]
