"""``wake2vec analyze``: recompute a finished run's metrics, probes and report without training.

The run directory holds everything needed: the recipe (in the manifest), the new rows as
initialised (``injected_rows.safetensors``) and after each phase (``NN-name/new_rows.safetensors``),
and the final model. Each phase's snapshot is the final model's embedding matrix with that
phase's new rows written back by id; the base rows are the final model's, which no built-in phase
changes (the drift metric shows it: exactly 1.0). Generation probes run on the final model and
replace the last phase's probes; earlier phases keep the probes recorded during the run. A run
unpacked from an archive without its final model is measured on the base model injected again
as the recipe says (same seed, same tokenizer), with the saved rows written in; probes are then
skipped, since the adapters of a LoRA phase are not in the base weights.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from wake2vec.api import Snapshot
from wake2vec.errors import RunDirError, UserInputError
from wake2vec.rundir.directory import MANIFEST, RunDir, write_json_atomic

log = logging.getLogger("wake2vec")


def analyze_run(path: Path, *, generation: bool = True, metrics: tuple[str, ...] = ()) -> Path:
    """Recompute ``path``'s metrics (the recipe's, or ``metrics`` when given) and write its
    report; returns the report's path (or the run directory when the recipe has no HTML report).

    Raises ``UserInputError`` for a directory that is not a finished run; takes the run's lock
    so a run still writing is refused rather than raced.
    """
    from wake2vec.recipe import Recipe
    from wake2vec.recipe.schema import PluginRef
    from wake2vec.registry import get_registry
    from wake2vec.runner import INJECTED_ROWS, METRICS_SCHEMA

    path = path.expanduser()
    if not (path / MANIFEST).is_file():
        raise UserInputError(f"{path} is not a wake2vec run directory (no {MANIFEST})")
    try:
        run = RunDir.prepare(path, resume=True, force=False)
    except RunDirError as exc:
        raise UserInputError(str(exc)) from None
    try:
        manifest = run.manifest
        if manifest.get("status") != "completed":
            raise UserInputError(
                f"{path} is a run with status {manifest.get('status')!r}; analyze needs a finished run "
                "(`wake2vec run RECIPE --output-dir DIR --resume` finishes it)")
        recipe = Recipe.model_validate(manifest["recipe"])
        registry = get_registry()
        refs = [PluginRef(name=m) for m in metrics] or list(recipe.analysis.metrics)
        for ref in refs:  # an unknown metric fails before the model loads
            registry.create("metric", ref.name, ref.params)
        phase_dirs = [_phase_dir(path, i, p.name) for i, p in enumerate(recipe.phases)]
        for needed in [path / INJECTED_ROWS, *(d / "new_rows.safetensors" for d in phase_dirs)]:
            if not needed.is_file():
                raise UserInputError(f"{path}: {needed.relative_to(path)} is missing; cannot analyze")
        final = (path / "final" / "model" / "config.json").is_file()
        if final:
            model, tokenizer = _load_final(path, manifest)
        else:  # an archive without the model: the base model, injected as the run injected it
            log.warning("analyze: %s has no final/model; rebuilding the embeddings from the base "
                        "model %s (generation probes need the final model and are skipped)",
                        path, manifest.get("model", {}).get("source"))
            from wake2vec.prepare import prepare
            from wake2vec.rundir.directory import cache_root

            prepared = prepare(recipe, registry, cache_root())
            model, tokenizer = prepared.loaded.model, prepared.injection.tokenizer
            generation = False
        words = _saved_words(path / INJECTED_ROWS)
        groups = _groups(recipe, words)
        parents = recipe.parents()
        for index, (spec, folder) in enumerate(zip(recipe.phases, phase_dirs, strict=True)):
            log.info("analyze: %s", spec.name)
            # before: the rows the phase started from (a checkpoint for `from = "p1:..."`)
            start = (manifest.get("phases", {}).get(spec.name, {}).get("started_from") or {}).get("checkpoint")
            parent = parents[index]
            if start and (path / start / "trainable.safetensors").is_file():
                before = _snapshot_with(model, path / start / "trainable.safetensors", spec.start_from, manifest)
            elif parent is None:
                before = _snapshot_with(model, path / INJECTED_ROWS, "injected", manifest)
            else:
                before = _snapshot_with(model, phase_dirs[parent] / "new_rows.safetensors",
                                        f"after-{recipe.phases[parent].name}", manifest)
            after = _snapshot_with(model, folder / "new_rows.safetensors", f"after-{spec.name}", manifest)
            record = _read(folder / "metrics.json") or {"phase": spec.name, "strategy": spec.strategy}
            record["schema_version"] = METRICS_SCHEMA
            record["analysis"] = _measure(registry, refs, before, after, words, recipe.run.seed,
                                          model, tokenizer, groups, index == len(phase_dirs) - 1)
            write_json_atomic(folder / "metrics.json", record)
        if generation and recipe.analysis.generation.enabled:
            from wake2vec.analysis.generation import probe

            log.info("analyze: generation probes on the final model")
            record = _read(phase_dirs[-1] / "metrics.json") or {}
            record["generation"] = probe(
                model, tokenizer, recipe.analysis.generation,
                new_ids=after.new_ids + list(_saved_aliases(path / INJECTED_ROWS)),
                lexicon=_lexicon_words(recipe, path), seed=recipe.run.seed)
            write_json_atomic(phase_dirs[-1] / "metrics.json", record)
        manifest.setdefault("analyses", []).append({"metrics": [r.name for r in refs],
                                                   "generation": generation, "final_model": final})
        run.save_manifest()
        if not recipe.report.html:
            return path
        from wake2vec.analysis.report import write_report

        return write_report(path, manifest, recipe.report.title)
    finally:
        run.close()


def _phase_dir(path: Path, index: int, name: str) -> Path:
    return path / f"{index + 1:02d}-{name}"


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _load_final(path: Path, manifest: dict[str, Any]) -> tuple[Any, Any]:
    from wake2vec.modeling import load_pretrained

    recipe = manifest["recipe"]["model"]
    loaded = load_pretrained(
        str(path / "final" / "model"), family=manifest.get("model", {}).get("family", "auto"),
        dtype=recipe.get("dtype", "float32"), quantization="none",  # a saved 4-bit config reloads as saved
        trust_remote_code=bool(recipe.get("trust_remote_code", False)))
    return loaded.model, loaded.tokenizer


def _snapshot_with(model: Any, rows: Path, label: str, manifest: dict[str, Any]) -> Snapshot:
    """The final model's input matrix with ``rows`` written in by id (the model is left as is)."""
    from safetensors.torch import load_file

    tensors = load_file(str(rows))
    ids = tensors["ids"].long()
    weight = model.get_input_embeddings().weight.detach().float().cpu().clone()
    weight[ids] = tensors["input"].float()
    n_base = int(manifest.get("model", {}).get("tokenizer_entries", int(ids.min())))
    return Snapshot(label, weight, list(range(n_base)), ids.tolist())


def _measure(registry: Any, refs: list[Any], before: Snapshot, after: Snapshot, words: list[str],
             seed: int, model: Any, tokenizer: Any, groups: dict[str, str], last: bool) -> dict[str, Any]:
    from wake2vec.api import MetricContext

    ctx = MetricContext(before=before, after=after, seed=seed, new_words=words, model=model,
                        tokenizer=tokenizer, groups=groups, last_phase=last)
    return {ref.name: json.loads(json.dumps(registry.create("metric", ref.name, ref.params).compute(ctx),
                                            default=float))
            for ref in refs}


def _groups(recipe: Any, words: list[str]) -> dict[str, str]:
    """Word groups for plots, as the run had them, when its morpheme files are still there."""
    from wake2vec.vocab.morphology import load_morphology, word_groups

    data = recipe.data
    if data.morphemes is None or not Path(data.morphemes).is_file():
        return {}
    extra = [p if p is not None and Path(p).is_file() else None
             for p in (data.morpheme_groups, data.device_groups)]
    return word_groups(words, load_morphology(data.morphemes, *extra))


def _saved_words(rows: Path) -> list[str]:
    """The lexicon word of each saved row (save_new_rows stores them in the file's metadata)."""
    from safetensors import safe_open

    with safe_open(str(rows), "pt") as handle:
        return json.loads((handle.metadata() or {}).get("words", "[]"))


def _saved_aliases(rows: Path) -> dict[int, int]:
    """The ``alias -> owner`` id pairs of a rows file (a word's second spelling)."""
    from safetensors.torch import load_file

    from wake2vec.rundir.artifacts import alias_pairs

    return alias_pairs(load_file(str(rows)))


def _lexicon_words(recipe: Any, path: Path) -> list[str]:
    """The recipe's lexicon when its file is still there, else the injected words."""
    from wake2vec.runner import INJECTED_ROWS

    lexicon = Path(recipe.data.lexicon)
    if lexicon.is_file():
        from wake2vec.vocab.lexicon import load_lexicon

        return list(load_lexicon(lexicon, encoding=recipe.data.encoding).words)
    return _saved_words(path / INJECTED_ROWS)
