"""What the run report shows, read from a run directory: each phase's history thinned for the
curves, branches grouped with their starting points, the summary rows, the geometry tables, the
neighbour table and the generation samples (rendered by :mod:`wake2vec.analysis.report`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from wake2vec.rundir.reading import dig, read_json, read_jsonl
from wake2vec.rundir.status import phase_dirs

MAX_TRAIN_POINTS = 2_000  # train-loss points per phase kept for the curves (evenly thinned)
NEIGHBOURS_SHOWN = 5  # neighbours per token and snapshot in the neighbour table


def _history(path: Path) -> list[dict[str, Any]]:
    """History rows with one row per (kind, step): a resumed phase re-logs steps, the last wins."""
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for row in read_jsonl(path):
        if isinstance(row.get("step"), int) and row.get("kind") in ("train", "eval"):
            rows[(row["kind"], row["step"])] = row
    return [rows[key] for key in sorted(rows, key=lambda k: (k[1], k[0]))]


def _thin(rows: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    if len(rows) <= limit:
        return rows
    stride = math.ceil(len(rows) / limit)
    return rows[::stride] + ([rows[-1]] if (len(rows) - 1) % stride else [])


def parents_of(manifest: dict[str, Any], names: list[str]) -> list[int | None]:
    """Per phase of ``names``, the index of the phase it continues (the recipe's ``from``)."""
    from wake2vec.recipe.schema import phase_parents, recipe_phase_starts

    starts = dict(recipe_phase_starts(manifest.get("recipe") or {}))
    return phase_parents([(n, starts.get(n, "best")) for n in names])


def curves(phases: list[dict[str, Any]], parents: list[int | None] | None = None) -> list[dict[str, Any]]:
    """Per phase, the training and evaluation series for the curves figure, with ``offset``:
    where the phase starts on a step axis shared by the run. A phase starts where its parent
    ended, or at the step of the checkpoint it started from (``from = "p1:step-8"``); branches of
    one phase therefore fork from the same point."""
    parents = parents if parents is not None else [i - 1 if i else None for i in range(len(phases))]
    out: list[dict[str, Any]] = []
    ends: list[int] = []
    for i, phase in enumerate(phases):
        rows = _history(phase["folder"] / "history.jsonl") if phase["folder"] else []
        train = _thin(
            [r for r in rows if _is_number(r.get("train_loss")) and r["kind"] == "train"],
            MAX_TRAIN_POINTS,
        )
        evals = [r for r in rows if r["kind"] == "eval"]
        parent = parents[i]
        start = dig(phase, "record", "started_from", "step")
        if parent is None:
            offset = 0
        elif isinstance(start, int):
            offset = out[parent]["offset"] + start
        else:
            offset = ends[parent]
        out.append(
            {
                "name": phase["name"],
                "offset": offset,
                "train": {
                    "step": [r["step"] for r in train],
                    "train_loss": [r["train_loss"] for r in train],
                },
                "eval": {
                    key: [r.get(key) for r in evals]
                    for key in ("step", "train_loss", "val_loss", "perplexity", "bits_per_byte")
                },
            }
        )
        steps = [r["step"] for r in rows] + [dig(phase, "record", "evaluation", "steps") or 0]
        ends.append(offset + max(s for s in steps if isinstance(s, int)))
    return out


def branch_groups(phases: list[dict[str, Any]], parents: list[int | None],
                  series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Phases that continue the same phase (two or more, at least one a branch), side by side:
    where each started, its validation at the start and the end, and its generation means."""
    groups = []
    for parent in sorted({p for p in parents if p is not None}):
        members = [i for i, p in enumerate(parents) if p == parent]
        if len(members) < 2:
            continue
        rows = []
        for i in members:
            phase, record = phases[i], phases[i]["record"]
            ev = record.get("evaluation") or {}
            began = record.get("started_from") or {}
            start_step = began.get("step", dig(phases[parent], "record", "evaluation", "handed_on_step"))
            # the parent's evaluation at the step the branch starts from: the branch's step 0
            at = {s: j for j, s in enumerate(series[parent]["eval"]["step"])}.get(start_step)
            start = {k: (v[at] if at is not None else None) for k, v in series[parent]["eval"].items()}
            start_val = began.get("val_loss", start["val_loss"])
            curve = series[i]["eval"]
            if at is not None:
                curve = {k: [0 if k == "step" else start[k], *v] for k, v in curve.items()}
            vals = [v for v in series[i]["eval"]["val_loss"] if _is_number(v)]
            mean = dig(phase, "metrics", "generation", "mean") or {}
            rows.append({
                "name": phase["name"],
                "from": f"{began['phase']}:{began['selector']}" if began else
                        f"{phases[parent]['name']} ({ev.get('handed_on') or 'best'})",
                "start_step": start_step,
                "start_val_loss": start_val,
                "steps": ev.get("steps"),
                "val_loss": ev.get("val_loss"),
                "change": ev["val_loss"] - start_val
                          if _is_number(ev.get("val_loss")) and _is_number(start_val) else None,
                "best_val_loss": min(vals) if vals else None,
                "bits_per_byte": ev.get("bits_per_byte"),
                "regime": ev.get("regime"),
                "new_token_share": mean.get("new_token_share"),
                "unknown_word_share": mean.get("unknown_word_share"),
                "eval": curve,
            })
        finals = [r["bits_per_byte"] for r in rows if _is_number(r["bits_per_byte"])]
        best = min(finals) if finals else None
        for r in rows:
            r["lowest"] = best is not None and r["bits_per_byte"] == best
        groups.append({"parent": phases[parent]["name"], "rows": rows})
    return groups


def collect(run_dir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Everything the report shows, read from the run directory (JSON-able)."""
    folders = phase_dirs(run_dir)
    phases = []
    for name, record in (manifest.get("phases") or {}).items():
        folder = folders.get(name)
        metrics = (read_json(folder / "metrics.json") if folder else None) or {}
        phases.append({"name": name, "folder": folder, "record": record, "metrics": metrics})
    parents = parents_of(manifest, [p["name"] for p in phases])
    series = curves(phases, parents)
    for phase in phases:
        phase["tables"] = geometry_tables(phase["metrics"].get("analysis") or {})
        phase["generation"] = generation_view(phase["metrics"].get("generation"))
        phase["folder"] = phase["folder"].name if phase["folder"] else None
    injection = read_json(run_dir / "injection.json") or {}
    return {
        "manifest": manifest,
        "summary": summary(manifest, injection),
        "injection": injection,
        "phases": phases,
        "curves": series,
        "neighbours": neighbour_table(phases),
        "branches": branch_groups(phases, parents, series),
    }


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def summary(manifest: dict[str, Any], injection: dict[str, Any]) -> list[tuple[str, Any]]:
    """The key facts of the run, as (label, value) rows for the top of the page."""
    model = manifest.get("model") or {}
    spec = dig(manifest, "recipe", "model") or {}
    emb = injection.get("embedding") or {}
    tied = model.get("tied")
    rows: list[tuple[str, Any]] = [
        ("run", dig(manifest, "recipe", "run", "name")),
        ("status", manifest.get("status")),
        ("model", spec.get("name") or model.get("source")),
        ("family", model.get("family")),
        (
            "output head",
            None
            if tied is None
            else ("tied to the input embeddings" if tied else "untied (own output rows)"),
        ),
        ("dtype / quantization", f"{spec.get('dtype', '?')} / {spec.get('quantization', '?')}"),
        (
            "embedding rows",
            _arrow(emb.get("rows_before"), emb.get("rows_after") or model.get("rows")),
        ),
        (
            "new ids (words)",
            _pair(dig(manifest, "injection", "new_ids"), dig(manifest, "injection", "words")),
        ),
        ("trainable rows", dig(manifest, "injection", "trainable_rows")),
        ("coverage of lexicon occurrences", injection.get("coverage")),
        ("dead words", dig(injection, "dead_tokens", "count")),
        ("round trip exact", dig(injection, "round_trip", "exact")),
        (
            "injector / initializer",
            " / ".join(
                str(dig(manifest, "recipe", "injection", k, "name") or "?")
                for k in ("injector", "initializer")
            ),
        ),
        ("seed", None if manifest.get("seed") is None else str(manifest["seed"])),
        ("created / updated", f"{manifest.get('created', '?')} / {manifest.get('updated', '?')}"),
        ("wake2vec", manifest.get("wake2vec_version")),
    ]
    return [(label, value) for label, value in rows if value is not None]


def _arrow(a: Any, b: Any) -> str | None:
    return None if a is None and b is None else f"{_int(a)} → {_int(b)}"


def _pair(a: Any, b: Any) -> str | None:
    return None if a is None else f"{_int(a)} ({_int(b)})"


def _int(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else "?"


def _table(title: str, columns: list[str], rows: list[list[Any]], note: str = "") -> dict[str, Any]:
    return {"title": title, "columns": columns, "rows": rows, "note": note}


def _labels(analysis: dict[str, Any]) -> str:
    """``before = injected, after = after-p1``: what the two snapshots of a phase are."""
    for key in ("norms", "isotropy", "pca-dims", "pairwise-cosine"):
        before, after = dig(analysis, key, "before", "label"), dig(analysis, key, "after", "label")
        if before or after:
            return f"before = {before}, after = {after}"
    drift = analysis.get("drift") or {}
    if isinstance(drift.get("before"), str):
        return f"before = {drift['before']}, after = {drift.get('after')}"
    return ""


def geometry_tables(analysis: dict[str, Any]) -> list[dict[str, Any]]:
    """The numbers of a phase's geometry metrics as small tables (title, columns, rows, note),
    row sets down the side and before/after side by side."""
    tables = []
    sets = ("base", "new", "all")
    labels = _labels(analysis)
    if isinstance(norms := analysis.get("norms"), dict):
        rows = [
            [w, dig(norms, "after", w, "n")]
            + [dig(norms, k, w, c) for c in ("mean", "std") for k in ("before", "after")]
            + [dig(norms, "after", w, c) for c in ("min", "max")]
            for w in ("base", "new")
        ]
        tables.append(
            _table(
                "Row norms",
                [
                    "rows",
                    "n",
                    "mean before",
                    "mean after",
                    "std before",
                    "std after",
                    "min after",
                    "max after",
                ],
                rows,
                labels,
            )
        )
        rows = [
            [
                k,
                dig(norms, k, "welch_t", "statistic"),
                dig(norms, k, "welch_t", "pvalue"),
                dig(norms, k, "mann_whitney_u", "pvalue"),
                dig(norms, k, "cohens_d"),
            ]
            for k in ("before", "after")
        ]
        tables.append(
            _table("Norms, new vs base", ["", "Welch t", "p", "Mann-Whitney p", "Cohen's d"], rows)
        )
    if isinstance(iso := analysis.get("isotropy"), dict):
        rows = [
            [w, dig(iso, "after", w, "rows")]
            + [dig(iso, k, w, m) for m in ("mu", "isoscore") for k in ("before", "after")]
            for w in sets
        ]
        tables.append(
            _table(
                "Isotropy",
                ["rows", "n", "Mu before", "Mu after", "IsoScore before", "IsoScore after"],
                rows,
                f"1 is isotropic; at most {iso.get('sample_size')} rows per set, "
                f"seed {iso.get('seed')}",
            )
        )
    if isinstance(drift := analysis.get("drift"), dict):
        rows = [
            [w]
            + [dig(drift, w, c) for c in ("rows", "mean", "min", "changed_rows", "max_abs_change")]
            for w in ("base", "new")
        ]
        tables.append(
            _table(
                "Drift",
                ["rows", "n", "mean cosine", "min cosine", "changed rows", "max |change|"],
                rows,
                "cosine of each row before and after, matched by id",
            )
        )
    if isinstance(nb := analysis.get("neighbours"), dict):
        rows = [
            ["top-k overlap", nb.get("overlap")],
            ["nearest cosine before", dig(nb, "nearest_cosine", "before", "mean")],
            ["nearest cosine after", dig(nb, "nearest_cosine", "after", "mean")],
        ]
        tables.append(
            _table(
                "Neighbours",
                ["", "value"],
                rows,
                f"k = {nb.get('k')}, {nb.get('queries')} new tokens",
            )
        )
    if isinstance(pca := analysis.get("pca-dims"), dict):
        keys = [f"{t:g}" for t in pca.get("thresholds") or (0.9, 0.95) if _is_number(t)]
        rows = [
            [w, dig(pca, "after", w, "rows")]
            + [dig(pca, k, w, "dims", t) for t in keys for k in ("before", "after")]
            for w in sets
        ]
        columns = [f"{float(t):.0%} {k}" for t in keys for k in ("before", "after")]
        tables.append(
            _table(
                "PCA dimensions",
                ["rows", "n", *columns],
                rows,
                f"components for that share of the variance; hidden size "
                f"{dig(pca, 'after', 'hidden')}",
            )
        )
    if isinstance(pw := analysis.get("pairwise-cosine"), dict):
        rows = [
            [g.replace("_", "-")]
            + [dig(pw, k, g, c) for c in ("mean", "std") for k in ("before", "after")]
            + [dig(pw, "after", g, c) for c in ("p05", "p95")]
            for g in ("base_base", "new_new", "base_new")
        ]
        ks = "; ".join(
            f"{k} D {_g(dig(pw, k, 'ks_base_new_new', 'statistic'))}, p "
            f"{_g(dig(pw, k, 'ks_base_new_new', 'pvalue'))}"
            for k in ("before", "after")
        )
        tables.append(
            _table(
                "Pairwise cosines",
                [
                    "pairs",
                    "mean before",
                    "mean after",
                    "std before",
                    "std after",
                    "5% after",
                    "95% after",
                ],
                rows,
                f"{pw.get('pairs')} pairs per group, seed {pw.get('seed')}; KS "
                f"base-base vs new-new: {ks}",
            )
        )
    if isinstance(pip := analysis.get("pip-loss"), dict):
        rows = [[w, dig(pip, w, "rows"), dig(pip, w, "pip"), dig(pip, w, "relative")] for w in sets]
        tables.append(
            _table(
                "PIP loss",
                ["rows", "n", "PIP", "relative"],
                rows,
                "||AAᵀ − BBᵀ|| between before and after",
            )
        )
    return tables


def _g(value: Any) -> str:
    return format(value, ".4g") if _is_number(value) else "n/a"


def neighbour_table(phases: list[dict[str, Any]]) -> dict[str, Any]:
    """The sampled new tokens with their nearest base tokens at injection and after each phase:
    ``{"columns": [snapshot labels], "rows": [{"id", "word", "cells": [[{token, cosine}]]}],
    "shown"}``."""
    columns: list[str] = []
    by_id: dict[int, dict[str, Any]] = {}
    for phase in phases:
        nb = dig(phase, "metrics", "analysis", "neighbours") or {}
        examples = [e for e in nb.get("examples") or [] if isinstance(e, dict)]
        if not examples:
            continue
        if not columns:  # the state the first measured phase started from
            label = dig(phase, "metrics", "analysis", "norms", "before", "label")
            columns.append(label or f"before {phase['name']}")
            for e in examples:
                by_id.setdefault(
                    e.get("id"), {"id": e.get("id"), "word": e.get("word"), "cells": {}}
                )["cells"][0] = e.get("before")
        columns.append(f"after {phase['name']}")
        for e in examples:
            entry = by_id.setdefault(
                e.get("id"), {"id": e.get("id"), "word": e.get("word"), "cells": {}}
            )
            entry["cells"][len(columns) - 1] = e.get("after")
    rows = []
    for entry in by_id.values():
        cells = [(entry["cells"].get(i) or [])[:NEIGHBOURS_SHOWN] for i in range(len(columns))]
        rows.append({"id": entry["id"], "word": entry["word"], "cells": cells})
    return {"columns": columns, "rows": rows, "shown": NEIGHBOURS_SHOWN}


def generation_view(generation: Any) -> dict[str, Any] | None:
    """A phase's generation probes arranged for the page: measures by temperature (sorted) and
    the samples grouped by temperature. None when the phase has none."""
    if not isinstance(generation, dict) or not generation.get("samples"):
        return None
    by_t = generation.get("by_temperature") or {}
    from wake2vec.analysis.generation import MEASURES  # their order: the table's columns

    measures = [m for m in MEASURES if any(m in (v or {}) for v in by_t.values())]
    extra = sorted({m for v in by_t.values() for m in (v or {}) if m not in MEASURES})
    measures += extra

    def temp_key(key: str) -> float:
        try:
            return float(key)
        except ValueError:
            return math.inf

    table = [
        [key] + [(by_t[key] or {}).get(m) for m in measures] for key in sorted(by_t, key=temp_key)
    ]
    if isinstance(generation.get("mean"), dict):
        table.append(["mean"] + [generation["mean"].get(m) for m in measures])
    groups: dict[Any, list[dict[str, Any]]] = {}
    for sample in generation["samples"]:
        if isinstance(sample, dict):
            t = sample.get("temperature")
            groups.setdefault(t if _is_number(t) else None, []).append(sample)
    order = sorted(groups, key=lambda t: (t is None, t or 0.0))
    return {
        "settings": generation.get("settings") or {},
        "measures": measures,
        "table": table,
        "groups": [{"temperature": t, "samples": groups[t]} for t in order],
    }
