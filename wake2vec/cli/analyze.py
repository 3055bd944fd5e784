"""``wake2vec analyze``: recompute a finished run's metrics and report without training."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("analyze")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--metric", "metrics", multiple=True, metavar="NAME",
              help="Measure only these metrics (repeatable; default: the recipe's analysis.metrics).")
@click.option("--no-generation", is_flag=True, help="Keep the recorded generation probes; do not sample.")
def analyze(run_dir: Path, metrics: tuple[str, ...], no_generation: bool) -> None:
    """Recompute the metrics, generation probes and report of the finished run in RUN_DIR.

    Loads the final model once, rebuilds each phase's before/after snapshots from the saved new
    rows, rewrites every phase's metrics.json (training results are kept) and report.html.
    Probes run on the final model and replace the last phase's. Exits 2 when RUN_DIR is not a
    finished run or is in use.
    """
    from wake2vec.analysis.reanalysis import analyze_run

    out = analyze_run(run_dir, generation=not no_generation, metrics=metrics)
    click.echo(f"analyzed: {out}")
