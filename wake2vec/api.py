"""The contract between the runner and plugins: one base class per extension kind and the
objects handed to them.

A plugin class has a ``name`` (what a recipe writes), a one-line docstring (what
``list-plugins`` shows) and a nested pydantic ``Params`` model (what the recipe may set under
``params``). The runner validates the params and constructs the class as ``cls(params)``.

This module must stay importable without torch: heavy types appear only in annotations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from wake2vec.events import PhaseEvents
    from wake2vec.vocab.morphology import Morphology


class Params(BaseModel):
    """Base for every plugin's parameter model: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Plugin:
    """Common shape of every implementation class."""

    name: ClassVar[str]
    Params: ClassVar[type[Params]] = Params

    def __init__(self, params: Params | None = None):
        self.params = params if params is not None else type(self).Params()


# --------------------------------------------------------------------------- model families


@dataclass
class ModelRequest:
    """What the recipe asks of a model family."""

    name: str | None  # hub id or local directory; None when the family builds its own
    dtype: str  # "float32" | "bfloat16" | "float16"
    quantization: str  # "none" | "nf4"
    trust_remote_code: bool
    seed: int
    cache_dir: Path  # where a family may write what it builds (the demo model)
    corpus: Path | None = None  # the recipe's corpus, for families that train a tokenizer
    # a family may call this with the tokenizer as soon as it is loaded (and final: the one
    # LoadedModel will hold), before the model; the runner then injects while the model loads
    tokenizer_ready: Callable[[Any], None] | None = None


@dataclass
class LoadedModel:
    """A model and its tokenizer as loaded, plus facts the rest of the run relies on."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    source: str  # the hub id or directory passed to from_pretrained
    family: str
    tied: bool  # the model's own tie setting, respected throughout
    lora_targets: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)  # shown in the log and the report
    source_file: dict[str, Any] = field(default_factory=dict)  # e.g. {"gguf": path, sha256, ...}


class ModelFamily(Plugin):
    """Loads one architecture family. ``model_types`` lists the config.json ``model_type``
    values it handles, used to detect the family of a hub id or directory."""

    model_types: ClassVar[tuple[str, ...]] = ()
    lora_targets: ClassVar[tuple[str, ...]] = ()

    def load(self, request: ModelRequest) -> LoadedModel:
        raise NotImplementedError


# --------------------------------------------------------------------------- injection


@dataclass
class Injection:
    """The outcome of adding a lexicon to a tokenizer."""

    tokenizer: PreTrainedTokenizerBase  # the extended tokenizer
    words: list[str]  # lexicon words that received new ids, in id order
    ids: list[int]  # new ids, parallel to ``words`` (a word may appear more than once)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (word, reason): already one token
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (word, reason): unusable entry
    base_vocab_size: int = 0  # len(tokenizer) before injection
    # a word's bare spelling (no space before it) -> the id of its word-initial spelling: the
    # word keeps two ids for exact round trips but trains one row; the bare id reads that row
    # plus a fixed shift (``alias_shift``); an owner is never an alias
    aliases: dict[int, int] = field(default_factory=dict)
    # filled by ``apply_injection``: "input" / "output" -> the vector an alias adds to its
    # owner's row in that matrix (the base vocabulary's mean bare-minus-word-initial row), or None
    alias_shift: dict[str, Any] = field(default_factory=dict)

    def row_ids(self) -> list[int]:
        """The new ids that own a trainable row (one per word), sorted."""
        return sorted({int(i) for i in self.ids} - set(self.aliases))

    def row_words(self) -> list[str]:
        """The word of each of :meth:`row_ids`, in the same order."""
        word_of = {int(i): w for i, w in zip(self.ids, self.words, strict=True)}
        return [word_of[i] for i in self.row_ids()]


class Injector(Plugin):
    """Adds lexicon words to a tokenizer so each becomes a new id."""

    def inject(self, tokenizer: PreTrainedTokenizerBase, words: list[str]) -> Injection:
        """Return the extended tokenizer as a new object in the Injection; ``tokenizer`` is the
        run's base tokenizer and must be left as it is."""
        raise NotImplementedError


@dataclass
class InitContext:
    """What an initialiser may use to fill new rows."""

    words: list[str]  # word of each new row, parallel to the rows to return
    ids: list[int]  # id of each new row
    base_tokenizer: PreTrainedTokenizerBase  # the tokenizer before injection
    base_ids: list[int]  # ids of the base vocabulary rows (padding rows excluded)
    morphology: Morphology | None
    generator: torch.Generator  # seeded from the run seed; the only randomness allowed


class Initializer(Plugin):
    """Fills the rows of new tokens from the base rows of one matrix."""

    def initialize(self, base: torch.Tensor, ctx: InitContext) -> torch.Tensor:
        """``base`` is the full matrix (rows x hidden); return ``len(ctx.ids)`` x hidden."""
        raise NotImplementedError


# --------------------------------------------------------------------------- training


@dataclass
class PhaseContext:
    """Everything a phase strategy needs; it does not reach back into the runner."""

    name: str  # the phase's label in the recipe (e.g. "p1")
    index: int
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    new_ids: list[int]  # the new ids that own a trainable row (one per word)
    base_vocab_size: int
    tied: bool
    lora_targets: tuple[str, ...]
    train: Any  # the phase's training settings (wake2vec.recipe.schema.PhaseSpec)
    data: Any  # wake2vec.training.data.DataBundle: split text and token blocks
    out_dir: Path
    seed: int
    resume: bool
    events: PhaseEvents
    morphology: Morphology | None = None
    regularizers: list[tuple[Regularizer, float]] = field(default_factory=list)
    new_words: list[str] = field(default_factory=list)
    hand_on: str = "last"  # "best" or "last": which state the phase leaves for what follows
    order_key: str = ""  # seeds the batch order with the run's seed (default: the phase's name)
    aliases: dict[int, int] = field(default_factory=dict)  # new id -> owner in ``new_ids``
    alias_shift: dict[str, Any] = field(default_factory=dict)  # see Injection.alias_shift
    # the evaluation of the point the phase starts from ({"val_loss": ...}: step 0 for the first
    # phase, else the state its parent handed on); its first evaluation's regime compares with it
    start_eval: dict[str, Any] | None = None


@dataclass
class PhaseResult:
    """What a phase leaves behind for the next one and for the report."""

    model: PreTrainedModel  # the model to hand to the next phase (adapters merged or attached)
    metrics: dict[str, Any]  # final evaluation: val_loss, perplexity, bits_per_byte, ...
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per logged step
    artefacts: dict[str, str] = field(default_factory=dict)  # label -> path inside the run dir


class PhaseStrategy(Plugin):
    """One training phase: which parameters train, and how."""

    # True for a phase that trains only the new rows (P1, P3): a control run, which adds no
    # word, leaves such phases out
    trains_new_rows_only: ClassVar[bool] = False

    def run(self, ctx: PhaseContext) -> PhaseResult:
        raise NotImplementedError

    def restore(self, ctx: PhaseContext) -> PreTrainedModel:
        """Re-apply a phase that completed in an earlier session, when a run resumes.

        The runner has already restored the new rows it saved after the phase; a phase that
        changes more than the rows (adapters) re-applies that here from ``ctx.out_dir``.
        """
        return ctx.model


@dataclass
class RegularizerContext:
    """What an auxiliary loss sees at each step."""

    new_rows: torch.Tensor  # current new input rows, with grad
    base_rows: torch.Tensor  # base input rows, no grad
    new_words: list[str]
    new_ids: list[int]
    morphology: Morphology | None
    initial_new_rows: torch.Tensor | None = None
    # the optimiser step this loss is for (0-based): a sampled loss seeds its draws from it, so a
    # resumed run draws exactly what an uninterrupted one did
    step: int = 0


class Regularizer(Plugin):
    """An auxiliary loss added to the language-model loss, weighted by the recipe."""

    def loss(self, ctx: RegularizerContext) -> torch.Tensor:
        raise NotImplementedError


# --------------------------------------------------------------------------- analysis


@dataclass
class Snapshot:
    """An embedding matrix at one moment, with ids telling which rows are base and new."""

    label: str  # "injected", "after-p1", ...
    weight: torch.Tensor  # rows x hidden, float32, CPU
    base_ids: list[int]
    new_ids: list[int]


@dataclass
class MetricContext:
    """Snapshots to compare and everything else a metric may need."""

    before: Snapshot
    after: Snapshot
    seed: int
    new_words: list[str] = field(default_factory=list)
    model: PreTrainedModel | None = None
    tokenizer: PreTrainedTokenizerBase | None = None
    groups: dict[str, str] = field(default_factory=dict)  # lexicon word -> device or morpheme group
    last_phase: bool = True  # the snapshots are those of the run's last phase


class Metric(Plugin):
    """Measures embedding geometry or model behaviour; returns JSON-serialisable values."""

    def compute(self, ctx: MetricContext) -> dict[str, Any]:
        raise NotImplementedError


KIND_BASES: dict[str, type[Plugin]] = {
    "model": ModelFamily,
    "injector": Injector,
    "initializer": Initializer,
    "phase": PhaseStrategy,
    "regularizer": Regularizer,
    "metric": Metric,
}
