"""``wake2vec trajectory``: how the new rows moved over training, from the snapshots a run kept.

Snapshots, in order: the rows as injected (``injected_rows.safetensors``), every
``NN-phase/snapshots/step-*.safetensors`` a phase with ``snapshot_every`` wrote, and each phase's
final ``new_rows.safetensors``. All hold the new rows by id (safetensors, as ``save_new_rows``
writes them). The base rows, which no built-in phase changes, come from the final model's
weights, read tensor by tensor with safetensors (the model is never loaded whole).

Measured per snapshot, on a seeded sample of new tokens: mean and spread of the cosine to the
injected rows (drift), norm percentiles, and the share of each token's top-k base neighbours that
are still those it had when injected. Written as ``trajectory.json``, ``trajectory.png`` and an
animation of the 2-D projection over training, ``trajectory.gif`` (matplotlib's Pillow writer).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wake2vec.errors import UserInputError
from wake2vec.rundir.directory import MANIFEST, write_json_atomic

if TYPE_CHECKING:
    import torch

_STEP = re.compile(r"step-(\d+)\.safetensors$")


@dataclass(frozen=True)
class Frame:
    """One snapshot of the new rows: where it came from and where it sits on the time axis."""

    label: str
    phase: str
    step: int  # step within its phase
    position: int  # cumulative step over the whole run
    path: Path


def frames(run_dir: Path, manifest: dict[str, Any] | None = None) -> list[Frame]:
    """Every snapshot of ``run_dir``, phase by phase in recipe order. A phase's position on the
    run's step axis follows the phase it continues: where that one ended, or the step of the
    checkpoint it started from (``from = "p1:step-40"``), so branches fork from one point."""
    from wake2vec.recipe.schema import phase_parents, recipe_phase_starts

    manifest = manifest if manifest is not None else _manifest(run_dir)
    pairs = recipe_phase_starts(manifest.get("recipe", {}))
    names = [name for name, _ in pairs]
    parents = phase_parents(pairs)
    out = [Frame("injected", "", 0, 0, run_dir / "injected_rows.safetensors")]
    starts: list[int] = []
    ends: list[int] = []
    for index, name in enumerate(names):
        record = manifest.get("phases", {}).get(name, {})
        began = (record.get("started_from") or {}).get("step")
        parent = parents[index]
        offset = (0 if parent is None else
                  starts[parent] + began if isinstance(began, int) else ends[parent])
        folder = run_dir / f"{index + 1:02d}-{name}"
        steps = sorted((int(m.group(1)), p) for p in (folder / "snapshots").glob("step-*.safetensors")
                       if (m := _STEP.search(p.name)))
        for step, path in steps:
            out.append(Frame(f"{name} step {step}", name, step, offset + step, path))
        total = int((record.get("evaluation") or {}).get("steps") or (steps[-1][0] if steps else 0))
        if (folder / "new_rows.safetensors").is_file():  # what the phase handed on (its best, maybe)
            out.append(Frame(f"after {name}", name, total, offset + total, folder / "new_rows.safetensors"))
        starts.append(offset)
        ends.append(offset + total)
    return [f for f in out if f.path.is_file()]


def continues(manifest: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """Per phase, the phase it continues ("" for the first, which continues the injected rows)
    and whether it started from a named checkpoint of it (``from = "p1:step-40"``)."""
    from wake2vec.recipe.schema import phase_parents, recipe_phase_starts

    pairs = recipe_phase_starts(manifest.get("recipe", {}))
    parents = phase_parents(pairs)
    return {name: ("" if parent is None else pairs[parent][0], ":" in start)
            for (name, start), parent in zip(pairs, parents, strict=True)}


def segments(snaps: list[dict[str, Any]], parents: dict[str, tuple[str, bool]]) -> list[list[int]]:
    """Indices of ``snaps`` to join with a line: one run per phase, starting from the point it
    starts from: the injected rows for the first phase, else its parent's point at the step where
    it starts (a snapshot there, or the parent's end)."""
    lines: dict[str, list[int]] = {}
    for i, s in enumerate(snaps):
        if s["phase"]:
            lines.setdefault(s["phase"], []).append(i)
    out = []
    for phase, indices in lines.items():
        parent, named = parents.get(phase, (None, False))
        first = snaps[indices[0]]
        start = first["position"] - first["step"]
        if parent == "":
            indices = [0, *indices]
        elif parent in lines:
            # from a named checkpoint: the snapshot of that step; else what the parent handed on
            at = [i for i in lines[parent] if snaps[i]["position"] == start
                  and snaps[i]["label"].startswith("after ") is not named]
            if at:
                indices = [at[-1], *indices]
        out.append(indices)
    return out


def _rows(path: Path) -> tuple[list[int], torch.Tensor]:
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    return tensors["ids"].tolist(), tensors["input"].float()


def _manifest(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / MANIFEST).read_text(encoding="utf-8"))


def _ids(path: Path) -> list[int]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        return handle.get_tensor("ids").tolist()


def _rows_of(path: Path, ids: list[int]) -> torch.Tensor:
    """The input rows of ``ids`` in snapshot ``path``, in the order of ``ids``."""
    frame_ids, rows = _rows(path)
    position = {t: i for i, t in enumerate(frame_ids)}
    return rows[[position[t] for t in ids]]


def base_rows(run_dir: Path, n_base: int) -> torch.Tensor:
    """The first ``n_base`` rows of the final model's input embedding, read tensor by tensor from
    its safetensors; for a run without ``final/model`` (an archive made without it), the base
    model's, loaded as the run loaded it (no phase changes the base rows)."""
    from safetensors import safe_open

    files = sorted((run_dir / "final" / "model").glob("*.safetensors"))
    for path in files:
        with safe_open(str(path), "pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open has no __iter__)
                if key.endswith("embed_tokens.weight") or key.endswith("wte.weight"):
                    return handle.get_slice(key)[:n_base].float()
    import logging

    from wake2vec.prepare import prepare
    from wake2vec.recipe import Recipe
    from wake2vec.registry import get_registry
    from wake2vec.rundir.directory import cache_root

    logging.getLogger(__name__).warning(
        "trajectory: %s has no final/model; loading the base model for the base rows", run_dir)
    try:
        recipe = Recipe.model_validate(_manifest(run_dir)["recipe"])
        model = prepare(recipe, get_registry(), cache_root()).loaded.model
    except (OSError, ValueError) as exc:
        raise UserInputError(f"{run_dir}: no final/model, and the base model cannot be loaded "
                             f"({exc}); unpack an archive made with --with-model") from exc
    return model.get_input_embeddings().weight.detach()[:n_base].float().clone()


def followed_ids(found: list[Frame], sample: int, seed: int) -> list[int]:
    """A seeded sample of at most ``sample`` of the token ids every snapshot holds (all new ids,
    or a phase's ``snapshot_rows`` sample), in the injected rows' order."""
    import torch

    common = set.intersection(*(set(_ids(f.path)) for f in found))
    ids = [t for t in _ids(found[0].path) if t in common]
    generator = torch.Generator().manual_seed(seed)
    picked = torch.randperm(len(ids), generator=generator)[: min(sample, len(ids))].sort().values
    return [ids[i] for i in picked.tolist()]


def measure(found: list[Frame], rows: list[torch.Tensor], base: torch.Tensor, ids: list[int], *,
            k: int, seed: int) -> dict[str, Any]:
    """The trajectory as JSON-ready data (see the module docstring): ``rows[i]`` holds the rows of
    ``ids`` in snapshot ``found[i]``; ``base`` the base rows."""
    import torch

    from wake2vec.analysis.geometry import nearest_neighbours, row_norms

    start = rows[0]
    start_nn = nearest_neighbours(start, base, k)[1]
    q = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    points: list[dict[str, Any]] = []
    for frame, now in zip(found, rows, strict=True):
        cos = torch.nn.functional.cosine_similarity(now.double(), start.double(), dim=1)
        norms = row_norms(now)
        nn = nearest_neighbours(now, base, k)[1]
        overlap = (nn.unsqueeze(2) == start_nn.unsqueeze(1)).any(dim=2).double().mean(dim=1)
        points.append({
            "label": frame.label, "phase": frame.phase, "step": frame.step, "position": frame.position,
            "drift_mean": float(cos.mean()), "drift_p10": float(cos.quantile(0.1)),
            "norm_mean": float(norms.mean()), "norm_quantiles": [float(v) for v in norms.quantile(q)],
            "overlap_mean": float(overlap.mean()),
        })
    return {"tokens": len(ids), "seed": seed, "k": k, "base_rows": int(base.shape[0]),
            "snapshots": points, "ids": ids}


def _projections(base: torch.Tensor, rows: list[torch.Tensor], seed: int,
                 base_sample: int = 600) -> tuple[Any, list[Any]]:
    """2-D PCA coordinates of a base sample and of the followed rows in every snapshot, all in
    one basis (fitted on the base sample and the last snapshot), so motion is comparable."""
    import torch

    generator = torch.Generator().manual_seed(seed + 1)
    base = base[torch.randperm(base.shape[0], generator=generator)[:base_sample]].double()
    snaps = [r.double() for r in rows]
    fit = torch.cat([base, snaps[-1]])
    mean = fit.mean(dim=0, keepdim=True)
    _, _, v = torch.linalg.svd(fit - mean, full_matrices=False)
    axes = v[:2].T
    return ((base - mean) @ axes).numpy(), [((s - mean) @ axes).numpy() for s in snaps]


def write_plots(run_dir: Path, data: dict[str, Any], lines: list[list[int]],
                projection: tuple[Any, list[Any]]) -> tuple[Path, Path]:
    """``trajectory.png`` (drift, norms, overlap against the cumulative step, one line per entry
    of ``lines``: indices of ``data["snapshots"]``) and ``trajectory.gif`` (``projection``: the
    base sample's and each snapshot's 2-D coordinates)."""
    import matplotlib
    from matplotlib.animation import FuncAnimation, PillowWriter

    from wake2vec.analysis.figures import BASE, NEW, STYLE, _figure, _png

    snaps = data["snapshots"]
    x = [s["position"] for s in snaps]
    with matplotlib.rc_context(STYLE):
        fig = _figure(12.0, 3.6, left=0.06, right=0.98, top=0.85, bottom=0.17, wspace=0.3)
        panels = fig.subplots(1, 3)
        for n, run in enumerate(lines):  # one line per phase, from the point it continues
            xs = [x[i] for i in run]

            def label(text: str, n: int = n) -> str | None:
                return text if n == 0 else None

            panels[0].plot(xs, [snaps[i]["drift_mean"] for i in run], marker="o", color=NEW, label=label("mean"))
            panels[0].plot(xs, [snaps[i]["drift_p10"] for i in run], marker=".", color=NEW, alpha=0.5,
                           label=label("10th percentile"))
            for j, name in enumerate(("10th", "median", "90th")):
                panels[1].plot(xs, [snaps[i]["norm_quantiles"][j] for i in run], marker=".", color=NEW,
                               alpha=(0.45, 1.0, 0.45)[j], label=label(name))
            panels[2].plot(xs, [snaps[i]["overlap_mean"] for i in run], marker="o", color=BASE)
        panels[0].set_title("Cosine to the injected rows")
        panels[0].legend()
        panels[1].set_title("Norms of the new rows")
        panels[1].legend()
        panels[2].set_ylim(0, 1.05)
        panels[2].set_title(f"Top-{data['k']} base neighbours kept since injection")
        starts = {}
        for s in snaps:
            starts.setdefault(s["phase"], s["position"] - s["step"])
        for ax in panels:
            ax.set_xlabel("step (all phases)")
            for phase, pos in starts.items():
                if phase:
                    ax.axvline(pos, color="#bbb", linewidth=0.8, linestyle="--")
        fig.suptitle(f"Trajectory of {data['tokens']} new tokens", fontsize=11, fontweight="bold")
        png = _png(fig)
    png_path = run_dir / "trajectory.png"
    png_path.write_bytes(png)

    base, moving = projection
    with matplotlib.rc_context(STYLE):
        fig = _figure(6.0, 6.0, left=0.05, right=0.95, top=0.92, bottom=0.05)
        ax = fig.add_subplot(1, 1, 1)
        ax.scatter(base[:, 0], base[:, 1], s=4, c=BASE, alpha=0.35, linewidths=0, label="base")
        dots = ax.scatter(moving[0][:, 0], moving[0][:, 1], s=6, c=NEW, linewidths=0, label="new")
        every = [*(m[:, 0] for m in moving), base[:, 0]]
        ys = [*(m[:, 1] for m in moving), base[:, 1]]
        import numpy as np

        ax.set_xlim(float(np.min([e.min() for e in every])), float(np.max([e.max() for e in every])))
        ax.set_ylim(float(np.min([e.min() for e in ys])), float(np.max([e.max() for e in ys])))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(loc="upper right")
        title = ax.set_title(snaps[0]["label"])

        def draw(i: int) -> Any:
            dots.set_offsets(moving[i])
            title.set_text(f"{snaps[i]['label']} (PCA of base sample and last snapshot)")
            return dots, title

        animation = FuncAnimation(fig, draw, frames=len(moving), blit=False)
        gif_path = run_dir / "trajectory.gif"
        animation.save(str(gif_path), writer=PillowWriter(fps=3))
    return png_path, gif_path


def trajectory(run_dir: Path, *, sample: int = 2000, k: int = 5) -> dict[str, Any]:
    """Measure, write ``trajectory.json`` and the plots; returns the data."""
    run_dir = Path(run_dir).expanduser()
    if not (run_dir / MANIFEST).is_file():
        raise UserInputError(f"{run_dir} is not a wake2vec run directory (no {MANIFEST})")
    manifest = _manifest(run_dir)
    seed = int(manifest.get("seed", 0))
    found = frames(run_dir, manifest)
    if len(found) < 2:
        raise UserInputError(f"{run_dir}: fewer than two snapshots of the new rows; run with a phase "
                             "`snapshot_every` or let at least one phase finish")
    ids = followed_ids(found, sample, seed)
    if not ids:
        raise UserInputError(f"{run_dir}: its snapshots share no token id")
    rows = [_rows_of(f.path, ids) for f in found]  # each snapshot read once
    base = base_rows(run_dir, int(manifest["model"]["tokenizer_entries"]))
    data = measure(found, rows, base, ids, k=k, seed=seed)
    lines = segments(data["snapshots"], continues(manifest))
    png, gif = write_plots(run_dir, data, lines, _projections(base, rows, seed))
    data["files"] = {"plot": png.name, "animation": gif.name}
    write_json_atomic(run_dir / "trajectory.json", data)
    return data
