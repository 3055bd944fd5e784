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

from wake2vec.analysis.report_data import _is_number, collect
from wake2vec.rundir.directory import write_json_atomic
from wake2vec.rundir.reading import dig

DEMO_NOTE = (
    "This run used the built-in demo model: random weights and a tokenizer trained on the demo "
    "corpus. It exists to exercise the pipeline; its losses and samples say nothing about "
    "language. Real runs name a hub model and the researcher's own text."
)
ITEMS_SHOWN = 200  # skipped / rejected entries listed on the page
_CONTROL = {c: 0x2400 + c for c in range(32) if chr(c) not in "\n\t"} | {127: 0x2421}


# ----------------------------------------------------------------------------- reading the run


# ----------------------------------------------------------------------------- page sections


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


def against_untouched(bits_per_byte: Any, baselines: dict[str, Any]) -> str:
    """A phase's bits per byte against the untouched model's, signed ("-0.219 (-8.7%)"), or
    "—" without both."""
    from wake2vec.training.baselines import against

    found = against(bits_per_byte, baselines or {})
    if found is None:
        return "—"
    return f"{found['bits_per_byte']:+.3f} ({found['relative']:+.1%})"


def peak_cell(peak: Any) -> str:
    """A phase's peak memory, training / analysis ("2,145 / 1,021 MiB RSS"), or "—"."""
    from wake2vec.training.memory import describe

    if not isinstance(peak, dict) or not peak:
        return "—"
    return " / ".join(describe(peak.get(part)) for part in ("training", "analysis"))


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
    env.globals["against"] = against_untouched
    env.globals["peak"] = peak_cell
    env.filters.update(
        cell=cell,
        listing=listing,
        share=share,
        visible=visible,
        join_prompt=join_prompt,
        tojson_pretty=lambda v: json.dumps(v, indent=2, ensure_ascii=False, default=str),
    )
    family = dig(data, "manifest", "model", "family")
    from wake2vec.control import side_by_side

    return env.get_template("report.html").render(
        title=title, demo_note=DEMO_NOTE if family == "demo" else None, figures=figures,
        control_rows=side_by_side(data["manifest"]), **data
    )


def write_report(run_dir: Path, manifest: dict[str, Any], title: str | None = None) -> Path:
    """Write ``report.json``, the figures and ``report.html`` into ``run_dir``; returns the
    HTML path."""
    from wake2vec.analysis.curves import branches_figure, curves_figure
    from wake2vec.analysis.figures import geometry_figure
    from wake2vec.analysis.figures_study import has_study_data, study_figure

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
    png = curves_figure(data["curves"], uniform, manifest.get("baselines"))
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
