"""Options shared by several commands."""

from __future__ import annotations

import click

recipe_argument = click.argument("recipe", type=click.Path(dir_okay=False))

set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help=(
        "Override a recipe value, e.g. --set phases[0].steps=10 (validated like the file). "
        'VALUE is read as TOML (10, 5e-4, true, "text", [0.7, 1.0], { alpha = 0.25 }), '
        "anything else as a string; null or none removes the key, so it takes its default "
        "(--set data.morphemes=null)."
    ),
)
