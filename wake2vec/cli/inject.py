"""``wake2vec inject``: load the model, inject the lexicon and print the injection report."""

from __future__ import annotations

import json
from pathlib import Path

import click

from wake2vec.cli.options import recipe_argument, set_option


@click.command("inject")
@recipe_argument
@set_option
@click.option("--json", "as_json", is_flag=True, help="Print the whole report as JSON.")
@click.option("--save", type=click.Path(file_okay=False, path_type=Path),
              help="Also save the extended tokenizer to this directory.")
def inject(recipe: str, overrides: tuple[str, ...], as_json: bool, save: Path | None) -> None:
    """Inject RECIPE's lexicon into its model and report the result, without training.

    The report counts words added (new ids, trainable rows), skipped (already one token) and
    rejected; coverage of lexicon words in the corpus; spurious hits inside other words; dead
    words (none of their ids produced by the corpus); and whether decoding gives back the
    corpus exactly.
    """
    from wake2vec.prepare import prepare
    from wake2vec.recipe import load_recipe
    from wake2vec.registry import get_registry
    from wake2vec.rundir.directory import cache_root

    resolved = load_recipe(recipe, overrides)
    prepared = prepare(resolved, get_registry(), cache_root())
    if save is not None:
        prepared.injection.tokenizer.save_pretrained(save)
    report = prepared.report
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False, default=str))
        return
    for key, value in report.items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value, ensure_ascii=False, default=str)
            if len(value) > 160:
                value = value[:157] + "..."
        click.echo(f"{key:>16}: {value}")
