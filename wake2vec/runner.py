"""Run a validated recipe: model -> injection -> phases -> metrics -> report, in one direction."""

from __future__ import annotations

import gc
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wake2vec.api import MetricContext, PhaseContext, Snapshot
from wake2vec.control import control_dir
from wake2vec.errors import RunDirError, UserInputError
from wake2vec.events import PhaseEvents, PhaseInfo, RunInfo
from wake2vec.plugins import get_plugins
from wake2vec.prepare import prepare
from wake2vec.recipe import Recipe, recipe_to_dict
from wake2vec.recipe.preflight import check_inputs
from wake2vec.recipe.schema import lineage
from wake2vec.registry import Registry, get_registry
from wake2vec.rundir.directory import RunDir, now, setup_logging, write_json_atomic
from wake2vec.rundir.reading import read_json
from wake2vec.seeding import derived_seed
from wake2vec.training.memory import PeakMemory, describe, release_memory

INJECTED_ROWS = "injected_rows.safetensors"  # the new rows as initialised, before any phase
METRICS_SCHEMA = 1  # NN-phase/metrics.json layout (docs/metrics.md); bumped on incompatible change

if TYPE_CHECKING:
    from wake2vec.training.parallel import Processes

log = logging.getLogger("wake2vec")


@dataclass
class RunOutcome:
    run_dir: Path
    status: str
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)


def default_run_dir(recipe: Recipe) -> Path:
    return recipe.run.output_dir or Path("runs") / recipe.run.name


class _Silent:
    """A hook relay whose every hook does nothing: the other processes of a multi-process run
    leave lifecycle events to the main one."""

    def __getattr__(self, name: str) -> Any:
        return lambda **kwargs: []


def execute(recipe: Recipe, *, source: str, overrides: list[str], run_dir: Path | None,
            resume: bool, force: bool) -> RunOutcome:
    """Run every step of ``recipe`` in its run directory; the manifest records the outcome.

    Under a launcher with several processes every process runs the recipe (the phases share
    each batch between them); only the main process writes the run directory and fires hooks.
    """
    from wake2vec.training.parallel import start_processes

    plugins = get_plugins()
    registry = get_registry()
    procs = start_processes()
    path = run_dir or default_run_dir(recipe)
    recipe_dict = recipe_to_dict(recipe)
    data_files = [p for p in (recipe.data.corpus, recipe.data.lexicon, recipe.data.morphemes,
                              recipe.data.morpheme_groups, recipe.data.device_groups) if p is not None]
    notes = check_inputs(recipe, registry)  # bad input is refused before anything is written
    if procs.main:
        try:
            run = RunDir.prepare(path, resume=resume, force=force)
        except RunDirError as exc:
            procs.share(str(exc))
            raise
        setup_logging(run.path)
        for note in notes:
            log.warning("%s", note)
        run.start_manifest(recipe=recipe_dict, source=source, overrides=list(overrides),
                           data_files=data_files, plugins=[p.__dict__ for p in plugins.active()])
        run.manifest["sessions"][-1]["processes"] = procs.count
        if recipe.run.control:
            run.manifest.setdefault("control", {"run_dir": str(control_dir(run.path)),
                                                "status": "pending"})
        run.save_manifest()
        procs.share(None)
    else:
        refused = procs.share(None)  # waits for the main process to prepare the directory
        if refused is not None:
            raise RunDirError(refused)
        run = RunDir.follow(path)
        setup_logging(run.path, rank=procs.index)
    hook = plugins.hook if procs.main else _Silent()
    info = RunInfo(recipe.run.name, run.path, recipe_dict, recipe.run.seed, resumed=resume)
    hook.wake2vec_run_start(run=info)
    status, error = "failed", None
    try:
        _run_steps(recipe, run, info, registry, hook, resume, procs)
        status = "completed"
        if procs.main and recipe.report.html:  # written once the manifest says completed
            from wake2vec.analysis.report import write_report

            run.set_status(status)
            write_report(run.path, run.manifest, recipe.report.title)
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        log.error("run failed: %s", exc)
        if isinstance(exc, UserInputError):
            run.discard_when_closed()  # found once the model loaded: leave nothing behind
        raise
    finally:
        run.set_status(status, error)
        hook.wake2vec_run_end(run=info, status=status, error=error)
        run.close()
    log.info("run %s completed: %s", recipe.run.name, run.path)
    if recipe.run.control:
        run_control(recipe, registry, run.path, procs.main, resume=resume, force=force)
    return RunOutcome(run.path, status, run.manifest.get("phases", {}))


def run_control(recipe: Recipe, registry: Registry, run_path: Path, main: bool, *, resume: bool,
                force: bool) -> None:
    """Run the control of the completed run in ``run_path`` (:mod:`wake2vec.control`), then
    give the run's manifest the control's figures and write its report again."""
    from wake2vec.control import control_recipe, summary

    control = control_recipe(recipe, registry)
    path = control_dir(run_path)
    log.info("control run: %s without injection (phases %s) in %s", recipe.run.name,
             ", ".join(p.name for p in control.phases), path)
    again = resume and (path / "manifest.json").is_file()
    outcome = execute(control, source=f"control of {run_path}", overrides=[], run_dir=path,
                      resume=again, force=force and not again)
    if not main:
        return
    manifest = read_json(run_path / "manifest.json") or {}
    manifest["control"] = summary(path, read_json(path / "manifest.json") or {})
    write_json_atomic(run_path / "manifest.json", manifest)
    if recipe.report.html:
        from wake2vec.analysis.report import write_report

        write_report(run_path, manifest, recipe.report.title)
    log.info("control run %s: %s", outcome.status, path)


def _run_steps(recipe: Recipe, run: RunDir, info: RunInfo, registry: Registry, hook: Any,
               resume: bool, procs: Processes | None = None) -> None:
    # accelerate's set_seed: transformers' imports peft and bitsandbytes (about 5 s)
    from accelerate.utils import set_seed

    from wake2vec.training.data import prepare_data
    from wake2vec.training.parallel import Processes

    procs = procs or Processes()
    main = procs.main
    seed = recipe.run.seed
    data = recipe.data
    # the main process first: the others then find a built model and tokenised data cached
    measured = run.manifest.get("baselines") or {}  # kept across resumes
    base_wanted = main and recipe.analysis.baselines and "base" not in measured
    watch = PeakMemory().start()
    prepared = procs.main_first(
        lambda: prepare(recipe, registry, run.cache_dir, evaluate_base=base_wanted))
    loaded, injection, lexicon, morphology = (prepared.loaded, prepared.injection, prepared.lexicon,
                                              prepared.morphology)
    base_tokenizer, tokenizer, model = prepared.base_tokenizer, injection.tokenizer, loaded.model
    run.manifest["model"] = {
        "family": loaded.family, "source": loaded.source, "tied": loaded.tied,
        "rows": int(model.get_input_embeddings().weight.shape[0]),
        "tokenizer_entries": len(base_tokenizer), "notes": loaded.notes, **loaded.source_file,
    }
    if main:
        write_json_atomic(run.path / "injection.json", prepared.report)
        tokenizer.save_pretrained(run.path / "tokenizer")
    new_ids = injection.row_ids()  # one trainable row per word; aliases read their owner's
    row_words = injection.row_words()
    aliases = dict(injection.aliases)
    run.manifest["injection"] = {"new_ids": len(set(injection.ids)), "words": len(set(injection.words)),
                                 "trainable_rows": len(new_ids)}
    run.save_manifest()

    from wake2vec.rundir.artifacts import load_new_rows, save_new_rows

    bundle = procs.main_first(
        lambda: prepare_data(data, tokenizer, run.path / "cache", seed, lexicon.words))
    if main and recipe.analysis.baselines and "injected" not in measured:
        from wake2vec.training.baselines import BASE, INJECTED, measure

        if prepared.base_eval is not None:
            measured[BASE] = prepared.base_eval
        log.info("baseline: evaluating the injected model before its first step")
        measured[INJECTED] = measure(model, bundle, recipe.phases[0].batch_size, len(tokenizer))
        run.manifest["baselines"] = measured
        run.save_manifest()
        log.info("baselines: untouched model %s; injected, step 0: %s",
                 _eval_line(measured.get(BASE) or {}), _eval_line(measured[INJECTED]))
    run.manifest.setdefault("peak_memory", {})["prepare"] = watch.read()
    watch.stop()
    release_memory()  # what loading and injecting left free
    run.save_manifest()
    snapshot = _snapshot(model, "injected", len(base_tokenizer), new_ids) if main else None
    if main and not (run.path / INJECTED_ROWS).is_file():  # what `wake2vec analyze` starts from
        save_new_rows(model, new_ids, row_words, run.path / INJECTED_ROWS, aliases,
                      injection.alias_shift)

    # ---------------------------------------------------------------- phases
    parents = recipe.parents()

    def context(index: int, model: Any) -> PhaseContext:
        spec = recipe.phases[index]
        source = spec.start_from.split(":", 1)[0] if ":" in spec.start_from else None
        return PhaseContext(
            name=spec.name, index=index, model=model, tokenizer=tokenizer, new_ids=new_ids,
            base_vocab_size=len(base_tokenizer), tied=loaded.tied, lora_targets=loaded.lora_targets,
            train=spec, data=bundle, out_dir=run.phase_dir(index, spec.name), seed=seed,
            resume=resume and run.phase_record(spec.name).get("status") in ("running", "failed", "interrupted"),
            events=None, morphology=morphology,
            regularizers=[(registry.create("regularizer", r.name, r.params), r.weight)
                          for r in spec.regularizers],
            new_words=lexicon_words_by_id(injection), hand_on=_hand_on(recipe, index), aliases=aliases,
            alias_shift=injection.alias_shift,
            # branches of one phase read the same batches, so only their starting point differs
            order_key=f"from-{source}" if source else spec.name)

    def restore(index: int, model: Any) -> Any:
        """``model`` with phase ``index``'s saved result applied (the phase has completed)."""
        spec = recipe.phases[index]
        model = registry.create("phase", spec.strategy, spec.params).restore(context(index, model))
        load_new_rows(model, run.phase_dir(index, spec.name) / "new_rows.safetensors")
        return model

    for index, spec in enumerate(recipe.phases):
        phase_dir = run.phase_dir(index, spec.name)
        record = run.phase_record(spec.name)
        if index and parents[index] != index - 1:  # a branch: the model as its parent left it
            log.info("phase %s branches from phase %s: rebuilding the model as that phase left it",
                     spec.name, recipe.phases[parents[index]].name)
            model = loaded = prepared = ctx = result = None  # free the old model first
            gc.collect()
            prepared = procs.main_first(lambda: prepare(recipe, registry, run.cache_dir))
            loaded, model = prepared.loaded, prepared.loaded.model
            tokenizer = prepared.injection.tokenizer
            for earlier in lineage(parents, parents[index]):
                model = restore(earlier, model)
            if main and ":" not in spec.start_from:
                snapshot = _snapshot(model, f"after-{recipe.phases[parents[index]].name}",
                                     len(base_tokenizer), new_ids)
        # a phase's set-up draws (LoRA's initial weights) from the global RNG: seed it per phase,
        # so a phase begun in a fresh process (a resume) starts where an uninterrupted run does
        set_seed(phase_seed(seed, index))
        strategy = registry.create("phase", spec.strategy, spec.params)
        ctx = context(index, model)
        rows_file = phase_dir / "new_rows.safetensors"
        if resume and record.get("status") == "completed" and rows_file.is_file():
            model = restore(index, model)
            log.info("phase %s already completed; restored its result", spec.name)
            if main:
                snapshot = _snapshot(model, f"after-{spec.name}", len(base_tokenizer), new_ids)
            continue
        if ":" in spec.start_from:  # a regime branch: rows from a checkpoint (resume: then its own)
            record["started_from"] = start_from_checkpoint(run, recipe, spec.start_from, model)
            log.info("phase %s starts from %s", spec.name, record["started_from"]["checkpoint"])
            if main:
                snapshot = _snapshot(model, spec.start_from, len(base_tokenizer), new_ids)
        phase = PhaseInfo(index, spec.name, spec.strategy, phase_dir, spec.steps)
        ctx.events = PhaseEvents(hook, info, phase)
        record.update(status="running", started=now(), strategy=spec.strategy)
        run.save_manifest()
        ctx.start_eval = _start_point(run, recipe, index, parents[index], record)
        hook.wake2vec_phase_start(run=info, phase=phase)
        watch = PeakMemory().start()
        result = strategy.run(ctx)
        model = result.model
        record["peak_memory"] = {"training": watch.read()}
        release_memory()
        if main:
            watch.start()  # the others hold the same model; the main process measures and writes it
            save_new_rows(model, new_ids, row_words, rows_file, aliases, injection.alias_shift)
            after = _snapshot(model, f"after-{spec.name}", len(base_tokenizer), new_ids)
            metrics = _compute_metrics(recipe, registry, snapshot, after, seed, row_words,
                                       model, tokenizer, morphology,
                                       last=index == len(recipe.phases) - 1)
            payload = {"schema_version": METRICS_SCHEMA, "phase": spec.name, "strategy": spec.strategy,
                       "evaluation": result.metrics, "analysis": metrics}
            if wants_probe(recipe, index):
                log.info("phase %s: generation probes", spec.name)
                payload["generation"] = run_probes(recipe, model, tokenizer, injection, lexicon)
            write_json_atomic(phase_dir / "metrics.json", payload)
            snapshot = after
            record["peak_memory"]["analysis"] = watch.read()
        watch.stop()
        release_memory()
        record.update(status="completed", ended=now(), evaluation=result.metrics,
                      artefacts=result.artefacts)
        run.save_manifest()
        hook.wake2vec_phase_end(run=info, phase=phase, metrics=result.metrics)
        log.info("phase %s done: %s", spec.name, _eval_line(result.metrics))
        log.info("phase %s peak memory: training %s; analysis %s", spec.name,
                 describe(record["peak_memory"].get("training")),
                 describe(record["peak_memory"].get("analysis")))

    # ---------------------------------------------------------------- artefacts and report
    procs.barrier()  # every process has finished training
    if not main:
        return
    final = run.path / "final"
    model.save_pretrained(final / "model")
    from wake2vec.vocab.tokenizer_files import save_beside_model

    saved = save_beside_model(tokenizer, final / "model")
    run.manifest.setdefault("final", {}).update(saved)
    run.save_manifest()


def _start_point(run: RunDir, recipe: Recipe, index: int, parent: int | None,
                 record: dict[str, Any]) -> dict[str, Any] | None:
    """The validation loss of the state phase ``index`` starts from: the checkpoint it names,
    its parent's handed-on state, or (the first phase) the injected model at step 0."""
    if (record.get("started_from") or {}).get("val_loss") is not None:
        return {"val_loss": record["started_from"]["val_loss"]}
    if parent is None:
        found = (run.manifest.get("baselines") or {}).get("injected") or {}
    else:
        evaluation = run.phase_record(recipe.phases[parent].name).get("evaluation") or {}
        found = {"val_loss": evaluation.get("handed_on_val_loss", evaluation.get("val_loss"))}
    return {"val_loss": found["val_loss"]} if found.get("val_loss") is not None else None


def phase_seed(seed: int, index: int) -> int:
    """The seed of the global RNG at the start of phase ``index``."""
    return derived_seed(f"wake2vec-phase-{seed}-{index}") % 2**32  # numpy's seeds are 32-bit


def _hand_on(recipe: Recipe, index: int) -> str:
    """What phase ``index`` leaves for the next: the next phase's ``from`` when it is "best" or
    "last"; "best" when the next starts from a named checkpoint or there is none."""
    if index + 1 < len(recipe.phases) and recipe.phases[index + 1].start_from in ("best", "last"):
        return recipe.phases[index + 1].start_from
    return "best"


def start_from_checkpoint(run: RunDir, recipe: Recipe, start: str, model: Any) -> dict[str, Any]:
    """Write the new rows of the checkpoint ``start`` names ("p1:best", "p1:last", "p1:step-40",
    "p1:regime=plateau": the latest checkpoint evaluated in that regime) into ``model``."""
    from wake2vec.rundir.artifacts import load_new_rows
    from wake2vec.rundir.reading import read_jsonl
    from wake2vec.training import checkpoint as ckpt

    source, selector = start.split(":", 1)
    index = next(i for i, p in enumerate(recipe.phases) if p.name == source)
    folder = run.phase_dir(index, source)
    root = folder / "checkpoints"
    kept = ckpt.list_checkpoints(root)
    steps = {int(ckpt.read_state(p)["progress"]["step"]): p for p in kept}
    chosen = None
    if selector == "best":
        chosen = ckpt.best_checkpoint(root)
    elif selector == "last":
        chosen = kept[-1] if kept else None
    elif selector.startswith("step-"):
        chosen = steps.get(int(selector[5:]))
    else:
        label = selector.split("=", 1)[1]
        evaluated = [r["step"] for r in read_jsonl(folder / "history.jsonl")
                     if r.get("kind") == "eval" and r.get("regime") == label and r.get("step") in steps]
        chosen = steps[max(evaluated)] if evaluated else None
    if chosen is None:
        have = ", ".join(str(s) for s in sorted(steps)) or "none"
        raise UserInputError(
            f"from = {start!r}: phase {source!r} has no such checkpoint (kept steps: {have}); keep more "
            f"with its keep_last or save_every, or choose another")
    rows = chosen / "trainable.safetensors"
    from safetensors import safe_open

    with safe_open(str(rows), "pt") as handle:
        if not {"ids", "input"} <= set(handle.keys()):
            raise UserInputError(f"from = {start!r}: phase {source!r} trains no embedding rows "
                                 "(a LoRA phase); branch from a phase that trains the new rows")
    load_new_rows(model, rows)
    state = ckpt.read_state(chosen)
    return {"phase": source, "selector": selector, "checkpoint": str(chosen.relative_to(run.path)),
            "step": int(state["progress"]["step"]), "val_loss": state.get("val_loss")}


def wants_probe(recipe: Recipe, index: int) -> bool:
    """Whether generation probes run after phase ``index``."""
    spec = recipe.analysis.generation
    return spec.enabled and (spec.every_phase or index == len(recipe.phases) - 1)


def run_probes(recipe: Recipe, model: Any, tokenizer: Any, injection: Any, lexicon: Any) -> dict[str, Any]:
    from wake2vec.analysis.generation import probe

    return probe(model, tokenizer, recipe.analysis.generation, new_ids=injection.ids,
                 lexicon=lexicon.words, seed=recipe.run.seed)


def lexicon_words_by_id(injection: Any) -> list[str]:
    """The lexicon word of each trainable row (``injection.row_ids()``), "" for rows that are
    not a word (BPE intermediate pieces)."""
    forms = getattr(injection, "forms", None) or ["word"] * len(injection.ids)
    word_of = {int(i): (w if form != "piece" else "")
               for i, w, form in zip(injection.ids, injection.words, forms, strict=True)}
    return [word_of[i] for i in injection.row_ids()]


def _snapshot(model: Any, label: str, n_base: int, new_ids: list[int]) -> Snapshot:
    weight = model.get_input_embeddings().weight.detach().float().cpu().clone()
    return Snapshot(label, weight, list(range(n_base)), list(new_ids))


def _compute_metrics(recipe: Recipe, registry: Registry, before: Snapshot, after: Snapshot, seed: int,
                     words: list[str], model: Any, tokenizer: Any, morphology: Any = None,
                     last: bool = True) -> dict[str, Any]:
    from wake2vec.vocab.morphology import word_groups

    ctx = MetricContext(before=before, after=after, seed=seed, new_words=list(words), model=model,
                        tokenizer=tokenizer, groups=word_groups(words, morphology), last_phase=last)
    results: dict[str, Any] = {}
    for ref in recipe.analysis.metrics:
        metric = registry.create("metric", ref.name, ref.params)
        results[ref.name] = json.loads(json.dumps(metric.compute(ctx), default=float))
    return results


def _eval_line(metrics: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
