"""``wake2vec archive`` and ``wake2vec unpack``: a run as one tar.gz, and back."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("archive")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Archive file (default: RUN_DIR.tar.gz beside the run).")
@click.option("--no-checkpoints", is_flag=True, help="Leave the phases' checkpoints out.")
@click.option("--with-model", is_flag=True, help="Include final/model (the whole model; large).")
def archive(run_dir: Path, output: Path | None, no_checkpoints: bool, with_model: bool) -> None:
    """Pack RUN_DIR into one tar.gz: manifest, recipe, logs, tokenizer, new rows, adapters,
    metrics, figures and report, each file listed with its SHA-256.

    The final model stays out unless --with-model; `analyze` on an unpacked run without it
    rebuilds the embeddings from the base model named in the manifest.
    """
    from wake2vec.rundir.archive import make_archive

    out = make_archive(run_dir, output, checkpoints=not no_checkpoints, model=with_model)
    click.echo(f"archived: {out} ({out.stat().st_size / 1e6:.1f} MB)")


@click.command("unpack")
@click.argument("archive_file", metavar="ARCHIVE", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-d", "--dest", type=click.Path(file_okay=False, path_type=Path),
              help="Run directory to create (default: the run's name in the current directory).")
@click.option("--force", is_flag=True, help="Replace an existing directory at the destination.")
def unpack(archive_file: Path, dest: Path | None, force: bool) -> None:
    """Restore a run directory from ARCHIVE (made by `wake2vec archive`), checking every file's
    checksum; `status`, `compare` and `analyze` then work on it."""
    from wake2vec.rundir.archive import unpack_archive

    click.echo(f"unpacked: {unpack_archive(archive_file, dest, force=force)}")
