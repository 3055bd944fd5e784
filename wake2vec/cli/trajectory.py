"""``wake2vec trajectory``: how the new rows moved over a run, with plots and an animation."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("trajectory")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--sample", type=click.IntRange(min=10), default=2000, show_default=True,
              help="New tokens followed (a seeded sample).")
@click.option("-k", "k", type=click.IntRange(min=1, max=100), default=5, show_default=True,
              help="Base neighbours per token for the overlap.")
def trajectory(run_dir: Path, sample: int, k: int) -> None:
    """Follow the new rows of RUN_DIR through its snapshots (injected, every `snapshot_every`
    steps of each phase, the end of each phase): drift from the injected rows, norms and
    neighbour overlap over time. Writes trajectory.json, trajectory.png and trajectory.gif."""
    from wake2vec.analysis.trajectory import trajectory as follow

    data = follow(run_dir, sample=sample, k=k)
    last = data["snapshots"][-1]
    click.echo(f"{len(data['snapshots'])} snapshots, {data['tokens']} tokens; at the end: cosine to "
               f"injected {last['drift_mean']:.3f}, neighbours kept {last['overlap_mean']:.2f}")
    click.echo(f"wrote {run_dir / 'trajectory.png'} and {run_dir / 'trajectory.gif'}")
