"""``wake2vec list-plugins``: what is installed, by kind, with provenance, and the presets of the
model families."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from wake2vec.registry import KINDS

if TYPE_CHECKING:
    from wake2vec.registry import Entry


def family_presets(entry: Entry) -> list[str]:
    """The preset names a model family declares (its ``presets`` class attribute)."""
    if entry.kind != "model":
        return []
    return [str(name) for name in getattr(entry.impl, "presets", ()) or ()]


def preset_rows() -> list[dict[str, object]]:
    """Every built-in preset, as ``model.preset`` takes it."""
    from wake2vec.presets import PRESETS

    return [
        {
            "name": p.name,
            "family": p.family,
            "hub_id": p.hub_id,
            "tokenizer": p.tokenizer,
            "tied": p.tied,
            "dtype": p.dtype,
            "quantization": p.quantization,
        }
        for p in PRESETS.values()
    ]


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    """Left-aligned columns; the last one is not padded."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])) + "  " + row[-1]
        for row in rows
    ]


@click.command("list-plugins")
@click.option("--kind", type=click.Choice(KINDS), help="Show only this kind.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_plugins(kind: str | None, as_json: bool) -> None:
    """List installed plugins: kind, name, provider, version and what each does, then the model
    presets a recipe can name with model.preset."""
    from wake2vec.registry import get_registry

    registry = get_registry()
    entries = registry.entries(kind)
    failures = registry.plugins.failures
    show_presets = kind in (None, "model")
    if as_json:
        plugins = []
        for e in entries:
            row = e.as_dict()
            if e.kind == "model":
                row["presets"] = family_presets(e)
            plugins.append(row)
        payload = {
            "plugins": plugins,
            "presets": preset_rows() if show_presets else [],
            "failed": [f.__dict__ for f in failures],
            "disabled": registry.plugins.disabled,
        }
        click.echo(json.dumps(payload, indent=2))
        return
    rows = [("KIND", "NAME", "PROVIDER", "VERSION", "DESCRIPTION")]
    for e in entries:
        description = e.description
        presets = family_presets(e)
        if presets:
            description += f" Presets: {', '.join(presets)}."
        rows.append((e.kind, e.name, e.provenance.distribution, e.provenance.version, description))
    for line in _table(rows):
        click.echo(line)
    for name in registry.plugins.disabled:
        click.echo(f"(disabled by WAKE2VEC_DISABLE_PLUGINS: {name})")
    if show_presets:
        click.echo("")
        click.echo('Model presets (model.preset = "NAME" sets the family and the hub id):')
        table = [("PRESET", "FAMILY", "HUB ID")]
        table += [(str(p["name"]), str(p["family"]), str(p["hub_id"])) for p in preset_rows()]
        for line in _table(table):
            click.echo(line)
