"""The run report: one self-contained HTML page (jinja2, autoescaped) and a JSON twin.

:func:`write_report` reads the run directory (manifest, injection report, each phase's
metrics.json and history.jsonl), writes ``report.json`` (the data the page shows), the figures
(``curves.png`` at the run root, ``NN-phase/geometry.png``) and ``report.html`` with the figures
embedded as data: URIs and the CSS inline, so the page makes no outside request. Every string
from the run (token strings, lexicon words, prompts, samples, file names) reaches the page only
through jinja2's autoescaping.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

from wake2vec.monitor import dig, phase_dirs, read_json, read_jsonl
from wake2vec.rundir import write_json_atomic

DEMO_NOTE = (
    "This run used the built-in demo model: random weights and a tokenizer trained on the demo "
    "corpus. It exists to exercise the pipeline; its losses and samples say nothing about "
    "language. Real runs name a hub model and the researcher's own text."
)
MAX_TRAIN_POINTS = 2_000  # train-loss points per phase kept for the curves (evenly thinned)
NEIGHBOURS_SHOWN = 5  # neighbours per token and snapshot in the neighbour table
ITEMS_SHOWN = 200  # skipped / rejected entries listed on the page
_CONTROL = {c: 0x2400 + c for c in range(32) if chr(c) not in "\n\t"} | {127: 0x2421}


# ----------------------------------------------------------------------------- reading the run


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


# ----------------------------------------------------------------------------- page sections


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
    from wake2vec.generation import MEASURES  # their order: the table's columns

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


# ----------------------------------------------------------------------------- rendering


def visible(text: Any) -> str:
    """``text`` with control characters (other than newline and tab) shown as their Unicode
    control pictures, so a sample's stray bytes are seen, not swallowed."""
    return str(text).translate(_CONTROL)


def cell(value: Any) -> str:
    """A table value as text: counts with thousands separators, floats to 4 significant
    digits, yes/no for booleans, a dash for missing values."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else format(value, ".4g")
    return str(value)


def listing(value: Any, key: str) -> list[Any]:
    """``value[key]`` when ``value`` is a mapping holding a list there, else an empty list."""
    found = value.get(key) if isinstance(value, dict) else None
    return found if isinstance(found, list) else []


def share(value: Any) -> str:
    return f"{value:.1%}" if _is_number(value) else "—"


def join_prompt(prompt: str, text: str) -> str:
    """The separator between a prompt and its continuation: a space unless either side has one
    (a SentencePiece decode of the continuation alone drops its leading space)."""
    if not prompt or not text or prompt[-1].isspace() or text[0].isspace():
        return ""
    return " "


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def render(data: dict[str, Any], title: str, figures: dict[str, str]) -> str:
    """The HTML page for ``data`` (from :func:`collect`) with ``figures`` (name -> data URI)."""
    from jinja2 import Environment, PackageLoader

    env = Environment(
        loader=PackageLoader("wake2vec", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["items_shown"] = ITEMS_SHOWN
    env.filters.update(
        cell=cell,
        listing=listing,
        share=share,
        visible=visible,
        join_prompt=join_prompt,
        tojson_pretty=lambda v: json.dumps(v, indent=2, ensure_ascii=False, default=str),
    )
    family = dig(data, "manifest", "model", "family")
    return env.get_template("report.html").render(
        title=title, demo_note=DEMO_NOTE if family == "demo" else None, figures=figures, **data
    )


def write_report(run_dir: Path, manifest: dict[str, Any], title: str | None = None) -> Path:
    """Write ``report.json``, the figures and ``report.html`` into ``run_dir``; returns the
    HTML path."""
    from wake2vec.figures import branches_figure, curves_figure, geometry_figure
    from wake2vec.figures_study import has_study_data, study_figure

    run_dir = Path(run_dir)
    data = collect(run_dir, manifest)
    write_json_atomic(run_dir / "report.json", data)
    uniform = next(
        (
            u
            for p in data["phases"]
            if _is_number(u := dig(p, "record", "evaluation", "uniform_loss"))
        ),
        None,
    )
    figures = {}
    png = curves_figure(data["curves"], uniform)
    _write_bytes(run_dir / "curves.png", png)
    figures["curves"] = _data_uri(png)
    for number, group in enumerate(data["branches"]):
        png = branches_figure(group)
        _write_bytes(run_dir / f"branches-{group['parent']}.png", png)
        figures[f"branches:{number}"] = _data_uri(png)
    for phase in data["phases"]:
        analysis = dig(phase, "metrics", "analysis")
        if not analysis or not phase["folder"]:
            continue
        png = geometry_figure(analysis, f"Embedding geometry, phase {phase['name']}")
        _write_bytes(run_dir / phase["folder"] / "geometry.png", png)
        figures[phase["name"]] = _data_uri(png)
        if has_study_data(analysis):
            png = study_figure(analysis, f"New tokens and their neighbourhoods, phase {phase['name']}")
            _write_bytes(run_dir / phase["folder"] / "study.png", png)
            figures[phase["name"] + ":study"] = _data_uri(png)
    run_name = dig(manifest, "recipe", "run", "name") or run_dir.name
    html = render(data, title or f"wake2vec run {run_name}", figures)
    path = run_dir / "report.html"
    tmp = path.with_name(".report.html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path
