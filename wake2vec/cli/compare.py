"""``wake2vec compare``: runs side by side as a text table, Markdown, HTML or JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

FORMATS = ("table", "markdown", "html", "json")


@click.command("compare")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to this file instead of standard output.",
)
def compare(run_dirs: tuple[Path, ...], fmt: str, output: Path | None) -> None:
    """Put RUN_DIRs side by side: model, tokenizer, injection, per-phase losses and geometry.

    Validation loss and perplexity are per token: when the runs' tokenizers differ they are
    marked as not comparable; bits per byte compares across tokenizers. A run made with
    run.control = true brings its control run (RUN_DIR-control) beside it.
    """
    from wake2vec.control import with_controls
    from wake2vec.errors import UserInputError
    from wake2vec.rundir.compare import compare_runs
    from wake2vec.rundir.reading import require_run_dirs

    require_run_dirs(run_dirs)
    comparison = compare_runs(with_controls(list(run_dirs)))
    text = RENDERERS[fmt](comparison)
    if output is None:
        click.echo(text)
    else:
        try:
            output.write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            raise UserInputError(f"cannot write {output}: {exc.strerror or exc}") from None
        click.echo(f"wrote {output}", err=True)


# ----------------------------------------------------------------------------- formatting


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _label(row: dict[str, Any], mark: str) -> str:
    return f"{row['label']} {mark}" if not row["comparable"] else row["label"]


def _footnote(comparison: dict[str, Any]) -> str | None:
    from wake2vec.rundir.compare import NOT_COMPARABLE

    if any(not r["comparable"] for r in comparison["rows"]):
        return f"(!) {NOT_COMPARABLE}."
    return None


def render_table(comparison: dict[str, Any]) -> str:
    """Plain text: one column per run, grouped by section."""
    labels = comparison["labels"]
    body = [
        (r["section"], _label(r, "(!)"), [cell(v) for v in r["values"]]) for r in comparison["rows"]
    ]
    width0 = max([len(b[1]) for b in body] + [len("run")]) + 4  # "  " indent and a gap
    widths = [max([len(lab)] + [len(b[2][i]) for b in body]) for i, lab in enumerate(labels)]
    lines = [
        "".ljust(width0) + "  ".join(lab.ljust(w) for lab, w in zip(labels, widths, strict=True))
    ]
    section = None
    for sec, label, values in body:
        if sec != section:
            lines.append(f"[{sec}]")
            section = sec
        lines.append(
            ("  " + label).ljust(width0)
            + "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()
        )
    note = _footnote(comparison)
    if note:
        lines += ["", note]
    return "\n".join(lines)


def _md(text: str) -> str:
    """A table cell: pipes and backslashes escaped, HTML neutralised (Markdown renders raw HTML)."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def render_markdown(comparison: dict[str, Any]) -> str:
    """A GitHub-flavoured pipe table."""
    header = ["", *comparison["labels"]]
    lines = [
        "| " + " | ".join(_md(h) for h in header) + " |",
        "|" + "|".join(["---"] + ["---:"] * len(comparison["labels"])) + "|",
    ]
    for row in comparison["rows"]:
        label = f"{row['section']}: {_label(row, '(!)')}"
        lines.append("| " + " | ".join(_md(x) for x in [label, *map(cell, row["values"])]) + " |")
    note = _footnote(comparison)
    if note:
        lines += ["", _md(note)]
    return "\n".join(lines)


HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>wake2vec: {{ labels|join(", ") }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th.label, td.label { text-align: left; }
tr.section th { background: #eee; text-align: left; }
td.not-comparable { color: #a00; }
</style></head><body>
<h1>wake2vec runs compared</h1>
<table>
<thead><tr><th class="label"></th>{% for label in labels %}<th>{{ label }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in rows %}
{% if loop.first or row.section != rows[loop.index0 - 1].section %}
<tr class="section"><th colspan="{{ labels|length + 1 }}">{{ row.section }}</th></tr>
{% endif %}
{% set flag = "" if row.comparable else " not-comparable" %}
<tr><td class="label{{ flag }}">{{ row.label }}
{%- if not row.comparable %} <span title="{{ row.note }}">(!)</span>{% endif %}</td>
{% for value in row.cells %}<td class="value{{ flag }}">{{ value }}</td>{% endfor %}</tr>
{% endfor %}
</tbody></table>
{% if note %}<p class="note">{{ note }}</p>{% endif %}
</body></html>
"""


def render_html(comparison: dict[str, Any]) -> str:
    """A self-contained page; every string is escaped (run names and paths are user data)."""
    from jinja2 import Environment

    env = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    rows = [dict(r, cells=[cell(v) for v in r["values"]]) for r in comparison["rows"]]
    return env.from_string(HTML).render(
        labels=comparison["labels"], rows=rows, note=_footnote(comparison)
    )


def render_json(comparison: dict[str, Any]) -> str:
    return json.dumps(comparison, indent=2, default=str, ensure_ascii=False)


RENDERERS = {
    "table": render_table,
    "markdown": render_markdown,
    "html": render_html,
    "json": render_json,
}
