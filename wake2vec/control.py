"""A control arm: the same recipe on the base tokenizer, with no injection, as a sibling run.

``run.control = true`` asks for it. After the treatment completes, ``<run dir>-control`` runs the
recipe with the ``none`` injector and without the phases that train only the new rows (P1, P3):
the other phases keep their steps, seed, batch order key and training text, and the validation
text is the same bytes. The treatment's manifest then carries the control's evaluations, and
its report and ``wake2vec compare`` set the two side by side in bits per byte: what the new
words earned beyond the other phases alone (for the study, beyond LoRA on the base tokenizer).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from wake2vec.errors import UserInputError

if TYPE_CHECKING:
    from wake2vec.recipe.schema import Recipe
    from wake2vec.registry import Registry

SUFFIX = "-control"
NO_INJECTION = "none"


def control_dir(run_dir: Path) -> Path:
    """Where the control of the run in ``run_dir`` goes: a sibling folder."""
    run_dir = Path(run_dir)
    return run_dir.with_name(run_dir.name + SUFFIX)


def control_recipe(recipe: Recipe, registry: Registry) -> Recipe:
    """``recipe`` as its control: no injection, no phase that trains only new rows.

    Raises :class:`UserInputError` when nothing would be left to train, or a kept phase starts
    from a checkpoint of new rows (which a control has none of)."""
    from wake2vec.recipe.load import recipe_to_dict
    from wake2vec.recipe.schema import Recipe

    kept, dropped = [], []
    for spec in recipe.phases:
        strategy = registry.get("phase", spec.strategy).impl
        if getattr(strategy, "trains_new_rows_only", False):
            dropped.append(spec.name)
            continue
        if ":" in spec.start_from:
            raise UserInputError(
                f"run.control: phase {spec.name!r} starts from {spec.start_from!r}, a checkpoint "
                "of the new rows, which a control run on the base tokenizer does not have; drop "
                "run.control or start that phase from the previous one")
        kept.append(spec.name)
    if not kept:
        raise UserInputError(
            f"run.control: every phase ({', '.join(dropped)}) trains only the new rows, so a "
            "control run on the base tokenizer would have nothing to train; add a phase that "
            "trains the model itself (strategy \"lora\") or drop run.control")
    data = recipe_to_dict(recipe)
    data["run"].update(name=recipe.run.name + SUFFIX, control=False, output_dir=None)
    data["injection"]["injector"] = {"name": NO_INJECTION, "params": {}}
    data["phases"] = [p for p in data["phases"] if p["name"] in kept]
    return Recipe.model_validate(data)


def summary(control_path: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """What the treatment's manifest keeps of its control: where it is, its status, and its
    baselines and evaluation per phase."""
    return {
        "run_dir": str(control_path),
        "status": manifest.get("status"),
        "baselines": manifest.get("baselines") or {},
        "phases": {name: record.get("evaluation") or {}
                   for name, record in (manifest.get("phases") or {}).items()},
    }


def side_by_side(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of treatment against control in bits per byte: the untouched model, step 0, then
    each treatment phase (a phase the control left out has no control figure; the control's
    figure there is where its model stood: the untouched model, or its last phase before)."""
    control = manifest.get("control") or {}
    if not control.get("phases") and not control.get("baselines"):
        return []
    ours = manifest.get("baselines") or {}
    theirs = control.get("baselines") or {}
    rows = [_row("untouched model", ours.get("base"), theirs.get("base"), ""),
            _row("injected, step 0", ours.get("injected"), theirs.get("injected"),
                 "control: nothing injected")]
    standing = theirs.get("injected") or theirs.get("base")
    for name, record in (manifest.get("phases") or {}).items():
        evaluation = record.get("evaluation")
        if name in control["phases"]:
            standing = control["phases"][name]
            rows.append(_row(name, evaluation, standing, ""))
        else:
            rows.append(_row(name, evaluation, standing, "not in the control (trains new rows "
                                                          "only): its model as it stood"))
    return rows


def _row(label: str, treatment: dict[str, Any] | None, control: dict[str, Any] | None,
         note: str) -> dict[str, Any]:
    ours = (treatment or {}).get("bits_per_byte")
    theirs = (control or {}).get("bits_per_byte")
    numbers = all(isinstance(v, (int, float)) for v in (ours, theirs))
    return {"label": label, "treatment": ours, "control": theirs,
            "difference": ours - theirs if numbers else None, "note": note}


def with_controls(run_dirs: list[Path]) -> list[Path]:
    """``run_dirs``, each followed by its control run when it has one that is not listed."""
    from wake2vec.rundir.reading import read_json

    listed = {Path(p).resolve() for p in run_dirs}
    out: list[Path] = []
    for run_dir in run_dirs:
        out.append(run_dir)
        recorded = ((read_json(Path(run_dir) / "manifest.json") or {}).get("control") or {})
        path = control_dir(Path(run_dir))
        if recorded and (path / "manifest.json").is_file() and path.resolve() not in listed:
            out.append(path)
            listed.add(path.resolve())
    return out
