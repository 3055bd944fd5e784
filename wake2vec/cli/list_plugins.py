"""``wake2vec list-plugins``: what is installed, by kind, with provenance."""

from __future__ import annotations

import json

import click

from wake2vec.registry import KINDS


@click.command("list-plugins")
@click.option("--kind", type=click.Choice(KINDS), help="Show only this kind.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_plugins(kind: str | None, as_json: bool) -> None:
    """List installed plugins: kind, name, provider, version and what each does."""
    from wake2vec.registry import get_registry

    registry = get_registry()
    entries = registry.entries(kind)
    failures = registry.plugins.failures
    if as_json:
        payload = {
            "plugins": [e.as_dict() for e in entries],
            "failed": [f.__dict__ for f in failures],
            "disabled": registry.plugins.disabled,
        }
        click.echo(json.dumps(payload, indent=2))
        return
    rows = [(e.kind, e.name, e.provenance.distribution, e.provenance.version, e.description) for e in entries]
    header = ("KIND", "NAME", "PROVIDER", "VERSION", "DESCRIPTION")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        click.echo("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4])
    for name in registry.plugins.disabled:
        click.echo(f"(disabled by WAKE2VEC_DISABLE_PLUGINS: {name})")
