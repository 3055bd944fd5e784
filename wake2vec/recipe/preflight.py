"""Check a recipe's inputs before a run writes anything (every data file reads and parses, the
lexicon has no unusable entry, the model source can be loaded) and, once the model is loaded,
that the run has something to train."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wake2vec.errors import DataError, UserInputError

if TYPE_CHECKING:
    from wake2vec.api import Injection, LoadedModel
    from wake2vec.recipe.schema import Recipe
    from wake2vec.registry import Registry


def check_inputs(recipe: Recipe, registry: Registry | None = None) -> list[str]:
    """Read the corpus, lexicon and morphology files of ``recipe`` and check its model source.

    Raises :class:`~wake2vec.errors.UserInputError` (naming the file and the line, key or
    column) on the first problem. Returns warnings about harmless quirks (duplicate lexicon
    entries, files that will be ignored) for the run log. Loads no model and writes nothing.
    """
    from wake2vec.training.data import check_corpus
    from wake2vec.vocab.lexicon import load_lexicon
    from wake2vec.vocab.morphology import load_morphology

    data = recipe.data
    check_corpus(data, recipe.run.seed)
    lexicon = load_lexicon(data.lexicon, encoding=data.encoding)
    lexicon.require_usable(data.lexicon)
    notes = lexicon.notes(data.lexicon)
    if data.morphemes is not None:
        load_morphology(data.morphemes, data.morpheme_groups, data.device_groups)
    else:
        ignored = [f"data.{k}" for k in ("morpheme_groups", "device_groups") if getattr(data, k)]
        if ignored:
            notes.append(
                f"{' and '.join(ignored)} {'is' if len(ignored) == 1 else 'are'} ignored: they "
                "extend data.morphemes (the morpheme CSV), which the recipe does not set"
            )
    _check_model_source(recipe, registry)
    if recipe.run.control:  # nothing left to train, or a phase a control cannot start
        from wake2vec.control import control_recipe
        from wake2vec.registry import get_registry

        control_recipe(recipe, registry or get_registry())
    return notes


def _check_model_source(recipe: Recipe, registry: Registry | None) -> None:
    """A model directory's config.json, or offline a hub id's cache entry, checked for the
    built-in families that load ``model.name`` with from_pretrained (a third-party family may
    read the name its own way, and the demo family ignores it)."""
    name = recipe.model.name
    if not name:
        return
    if recipe.model.family is not None:
        from wake2vec.registry import get_registry

        entry = (registry or get_registry()).get("model", recipe.model.family)
        loads_by_name = entry.name == "auto" or bool(getattr(entry.impl, "model_types", ()))
        if not (entry.provenance.builtin and loads_by_name):
            return
    from wake2vec.modeling import check_source

    check_source(name, recipe.model.trust_remote_code)


def check_loaded(recipe: Recipe, loaded: LoadedModel) -> None:
    """After loading, before injection: the blocks fit the model's positions."""
    limit = context_length(loaded.model)
    seq_len = recipe.data.seq_len
    if limit is not None and seq_len > limit:
        raise UserInputError(
            f"data.seq_len = {seq_len} is longer than the model {loaded.source} ({loaded.family} "
            f"family) can attend over (max_position_embeddings = {limit}); set data.seq_len to "
            f"{limit} or less"
        )


def check_prepared(recipe: Recipe, loaded: LoadedModel, injection: Injection) -> None:
    """After injection: at least one lexicon word became a new token (unless the recipe asked
    for no injection: a control run)."""
    if not injection.ids and recipe.injection.injector.name != "none":
        source = f"{loaded.source} ({loaded.family} family)"
        raise DataError(nothing_new(str(recipe.data.lexicon), source, injection))


def context_length(model: Any) -> int | None:
    """The number of positions the model was built for, when its config says."""
    config = model.config
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    limit = getattr(config, "max_position_embeddings", None)
    return limit if isinstance(limit, int) and limit > 0 else None


def nothing_new(lexicon: str, source: str, injection: Injection) -> str:
    """Why an injection added no token, with a few of the lexicon's words as examples."""
    skipped, rejected = list(injection.skipped), list(injection.rejected)
    parts = []
    if skipped:
        parts.append(f"{len(skipped)} already known ({_examples(skipped)})")
    if rejected:
        parts.append(f"{len(rejected)} rejected ({_examples(rejected)})")
    return (
        f"{lexicon}: no lexicon word is new to the tokenizer of {source}, so there is nothing to "
        f"inject or train: {'; '.join(parts) or 'the lexicon is empty'}; give a lexicon of words "
        "the tokenizer splits into several pieces"
    )


def _examples(pairs: list[tuple[str, str]]) -> str:
    shown = ", ".join(f"{word!r}: {why}" for word, why in pairs[:3])
    return shown + (", ..." if len(pairs) > 3 else "")
