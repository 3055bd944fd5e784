"""``wake2vec run``: a whole study from one recipe."""

from __future__ import annotations

from pathlib import Path

import click

from wake2vec.cli.options import recipe_argument, set_option


@click.command("run")
@recipe_argument
@set_option
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Run directory (default: runs/<run.name>).")
@click.option("--resume", is_flag=True, help="Continue the run in an existing run directory.")
@click.option("--force", is_flag=True, help="Replace an existing run directory.")
def run(recipe: str, overrides: tuple[str, ...], output_dir: Path | None, resume: bool, force: bool) -> None:
    """Run RECIPE: load the model, inject the lexicon, train each phase, measure and report.

    The recipe is validated completely before any model loads. Results go to runs/<name>/
    (or --output-dir): manifest.json, run.log, injection.json, one folder per phase,
    final/ and report.html. An existing run directory is never replaced without --force.
    """
    from wake2vec.recipe import load_recipe
    from wake2vec.runner import execute

    resolved = load_recipe(recipe, overrides)
    outcome = execute(resolved, source=recipe, overrides=list(overrides), run_dir=output_dir,
                      resume=resume, force=force)
    from wake2vec.training.parallel import is_main_process

    if is_main_process():
        click.echo(f"run {outcome.status}: {outcome.run_dir}")
