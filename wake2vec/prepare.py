"""Prepare a run: read the data, load the model, inject the lexicon (while the model loads, where
the family allows) and initialise the new rows; shared by ``wake2vec run`` and ``inject``."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wake2vec.api import ModelRequest
from wake2vec.errors import TrainingError, UserInputError
from wake2vec.recipe import Recipe
from wake2vec.recipe.preflight import check_loaded, check_prepared
from wake2vec.registry import Registry

if TYPE_CHECKING:
    from collections.abc import Callable

    from wake2vec.api import LoadedModel

log = logging.getLogger("wake2vec")


def resolve_family(recipe: Recipe, registry: Registry) -> str:
    """The family named by the recipe, or the one declaring the model's ``model_type``."""
    if recipe.model.family:
        return recipe.model.family
    from wake2vec.modeling import read_model_type

    model_type = read_model_type(recipe.model.name or "")
    if model_type:
        entry = registry.family_for_model_type(model_type)
        if entry is not None:
            return entry.name
    return "auto"


@dataclass
class Prepared:
    """The state after loading and injection, shared by ``run`` and ``inject``."""

    loaded: LoadedModel
    base_tokenizer: Any
    injection: Any
    text: str
    lexicon: Any
    morphology: Any
    report: dict[str, Any]
    base_eval: dict[str, Any] | None = None  # the untouched model on the validation text


def prepare(recipe: Recipe, registry: Registry, cache_dir: Path, *,
            evaluate_base: bool = False) -> Prepared:
    """Read the data, load the model, inject the lexicon and initialise the new rows; with
    ``evaluate_base`` (and ``analysis.baselines``) first evaluate the untouched model with its
    own tokenizer on the validation text (blocks cached under ``cache_dir``/blocks)."""
    # accelerate's set_seed: transformers' imports peft and bitsandbytes (about 5 s)
    from accelerate.utils import set_seed

    from wake2vec.vocab.files import read_corpus
    from wake2vec.vocab.injection import apply_injection
    from wake2vec.vocab.lexicon import load_lexicon
    from wake2vec.vocab.morphology import load_morphology
    from wake2vec.vocab.verify import verify_injection

    seed = recipe.run.seed
    set_seed(seed)
    if recipe.run.deterministic:
        use_deterministic_algorithms()
    data = recipe.data
    text = read_corpus(data.corpus, data.encoding)
    lexicon = load_lexicon(data.lexicon, encoding=data.encoding)
    morphology = None
    if data.morphemes is not None:
        morphology = load_morphology(data.morphemes, data.morpheme_groups, data.device_groups)
    _require_phase_data(recipe, morphology)

    family_name = resolve_family(recipe, registry)
    family = registry.create("model", family_name, recipe.model.family_params())
    injector = registry.create("injector", recipe.injection.injector.name, recipe.injection.injector.params)
    initializer = registry.create("initializer", recipe.injection.initializer.name,
                                  recipe.injection.initializer.params)
    log.info("loading model (family %s, %s)", family_name, recipe.model.name or "built locally")
    request = ModelRequest(
        name=recipe.model.name, dtype=recipe.model.dtype, quantization=recipe.model.quantization,
        trust_remote_code=recipe.model.trust_remote_code, seed=seed,
        cache_dir=cache_dir / "models", corpus=data.corpus)

    def inject(tokenizer: Any) -> tuple[Any, dict[str, Any]]:
        injection = _inject(injector, tokenizer, lexicon.words)
        return injection, verify_injection(tokenizer, injection.tokenizer, injection, text)

    loaded, (injection, report) = _load_and_inject(family, request, inject)
    for note in loaded.notes:
        log.info("model note: %s", note)
    check_loaded(recipe, loaded)
    base_tokenizer = loaded.tokenizer
    check_prepared(recipe, loaded, injection)
    base_eval = None
    if evaluate_base and recipe.analysis.baselines:  # before the matrices change
        from wake2vec.training.baselines import measure
        from wake2vec.training.data import prepare_data

        log.info("baseline: evaluating the untouched model on the validation text")
        bundle = prepare_data(data, base_tokenizer, cache_dir, seed, lexicon.words, text=text)
        base_eval = measure(loaded.model, bundle, recipe.phases[0].batch_size, len(base_tokenizer))
    summary = apply_injection(loaded.model, injection, initializer,
                              base_ids=list(range(len(base_tokenizer))),
                              morphology=morphology, seed=seed, tied=loaded.tied,
                              base_tokenizer=base_tokenizer)
    report["lexicon"] = {"file": str(data.lexicon), "entries": len(lexicon.words),
                         "duplicates": lexicon.duplicates,
                         "rejected": [list(r) for r in lexicon.rejected]}
    report["embedding"] = summary
    log.info("injection: %s", _injection_line(report))
    return Prepared(loaded, base_tokenizer, injection, text, lexicon, morphology, report,
                    base_eval)


def _load_and_inject(family: Any, request: ModelRequest,
                     inject: Callable[[Any], Any]) -> tuple[LoadedModel, Any]:
    """Load the model, and ``inject(tokenizer)`` (the injection and its report). A family that
    hands its tokenizer over before loading the model (``ModelRequest.tokenizer_ready``) has
    it injected while the model loads: loading a model mostly imports Python code, injecting
    mostly runs in the tokenizers library, which leaves the interpreter free."""
    from concurrent.futures import ThreadPoolExecutor

    handed: list[Any] = []
    ready = threading.Event()

    def tokenizer_ready(tokenizer: Any) -> None:
        handed.append(tokenizer)
        ready.set()

    request = replace(request, tokenizer_ready=tokenizer_ready)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="wake2vec-load") as pool:
        loading = pool.submit(family.load, request)
        loading.add_done_callback(lambda _: ready.set())
        ready.wait()
        done = inject(handed[0]) if handed else None
        loaded: LoadedModel = loading.result()
    if done is None or loaded.tokenizer is not handed[0]:
        done = inject(loaded.tokenizer)
    return loaded, done


def _inject(injector: Any, tokenizer: Any, words: list[str]) -> Any:
    """``injector``'s injection of ``words``; an injector must leave ``tokenizer`` as it was."""
    entries = len(tokenizer)
    injection = injector.inject(tokenizer, words)
    if len(tokenizer) != entries or injection.tokenizer is tokenizer:
        raise TrainingError(
            f"injector {injector.name!r} changed the tokenizer it was given; an injector must "
            "return the extended tokenizer as a new object and leave the base one as it was")
    return injection


def use_deterministic_algorithms() -> None:
    """Make repeated runs bit-identical: some multithreaded CPU kernels (and many CUDA ones)
    otherwise sum in a varying order."""
    import os

    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by cuBLAS for determinism
    # the public torch.use_deterministic_algorithms also imports torch._inductor (1.3 s here)
    # to set torch.compile's own flag; wake2vec compiles nothing, so it sets the core flag alone
    core = getattr(torch._C, "_set_deterministic_algorithms", None)
    if core is not None:
        core(True, warn_only=True)
    else:
        torch.use_deterministic_algorithms(True, warn_only=True)


def _require_phase_data(recipe: Recipe, morphology: Any) -> None:
    needs = [p for p in recipe.phases if p.regularizers]
    if needs and morphology is None:
        raise UserInputError(
            f"phase {needs[0].name!r} uses regularizers that need morpheme data; set data.morphemes "
            "(a CSV of type,morpheme,example1..example10)")


def _injection_line(report: dict[str, Any]) -> str:
    keys = ("added", "skipped", "rejected", "coverage", "spurious_hits", "dead_tokens", "round_trip")
    return ", ".join(f"{k}={_short(report.get(k))}" for k in keys if k in report)


def _short(value: Any) -> Any:
    if isinstance(value, dict):
        return value.get("count", value.get("exact", len(value)))
    if isinstance(value, list):
        return len(value)
    return value
