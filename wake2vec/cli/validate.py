"""``wake2vec validate``: check a recipe and print it fully resolved, with every default."""

from __future__ import annotations

import click

from wake2vec.cli.options import recipe_argument, set_option


@click.command("validate")
@recipe_argument
@set_option
@click.option("--json", "as_json", is_flag=True, help="Print the resolved recipe as JSON.")
def validate(recipe: str, overrides: tuple[str, ...], as_json: bool) -> None:
    """Validate RECIPE (schema, plugin names and parameters, data files) without loading a model.

    Prints the resolved recipe (defaults filled in, paths made absolute) as TOML, or JSON with
    --json. Exits 2 and lists every problem when the recipe is not valid.
    """
    import tomli_w

    from wake2vec.recipe import load_recipe, recipe_to_dict, recipe_to_json

    resolved = load_recipe(recipe, overrides)
    if as_json:
        click.echo(recipe_to_json(resolved))
        return
    click.echo(f"# {recipe} is valid; resolved with defaults:")
    click.echo(tomli_w.dumps(_drop_none(recipe_to_dict(resolved))), nl=False)


def _drop_none(value: object) -> object:
    """TOML has no null: leave unset optional keys out."""
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value
