"""``wake2vec lexicon build``: mine a lexicon of coinages from a text."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import IO

import click

from wake2vec.errors import UserInputError


@click.group("lexicon")
def lexicon() -> None:
    """Build lexicons (the new words to inject) from a text."""


@lexicon.command("build")
@click.argument("text", type=click.Path(dir_okay=True, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Write the lexicon here, one word per line.")
@click.option("--scored", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write every candidate with count, Zipf, score and decision (CSV) for audit.")
@click.option("--min-length", default=5, show_default=True, type=click.IntRange(min=1),
              help="Drop words shorter than this many characters.")
@click.option("--min-count", default=1, show_default=True, type=click.IntRange(min=1),
              help="Drop words seen fewer times than this in the text. The default keeps coinages "
                   "used once, as the study's lexicon does (most Wake coinages occur once); 2 "
                   "keeps recurring words only.")
@click.option("--zipf-ceiling", default=3.0, show_default=True, type=float,
              help="Drop words whose English Zipf frequency (wordfreq) is above this. Every word "
                   "of the study's 44,990-word Wake lexicon is at or below 3.0.")
@click.option("--stopwords", "stopwords_file", type=click.Path(dir_okay=False, path_type=Path),
              help="A file of extra stop words (one per line) on top of the built-in English list.")
@click.option("--keep-fragments", is_flag=True,
              help="Keep truncated pieces of common words (wher, throug) instead of dropping them.")
@click.option("--no-clean", is_flag=True,
              help="Use the text as it is: no banner stripping, hyphen rejoining or space cleanup.")
@click.option("--encoding", default="utf-8", show_default=True, help="Text encoding of TEXT and --stopwords.")
@click.option("--force", is_flag=True, help="Overwrite existing output files.")
def build(text: Path, output: Path, scored: Path | None, min_length: int, min_count: int,
          zipf_ceiling: float, stopwords_file: Path | None, keep_fragments: bool, no_clean: bool,
          encoding: str, force: bool) -> None:
    """Mine TEXT for word types that general English does not know and write them to OUTPUT.

    TEXT is cleaned first (e-book banners, OCR double spaces, line-break hyphenation). Words
    are kept when they are long enough, occur --min-count times, are no stop words, lie at or
    below the Zipf ceiling, and are not truncated pieces of common words. A table of kept and
    dropped words by reason ends the output. Existing outputs are only replaced with --force.

    \b
    Example:
      wake2vec lexicon build wake.txt -o lexicon.txt --scored lexicon_scored.csv
    """
    from wake2vec.vocab.lexicon_build import DEFAULT_STOPWORDS, build_lexicon, load_stopwords
    from wake2vec.vocab.textclean import clean_text, read_text_file

    outputs = [output] + ([scored] if scored is not None else [])
    _check_outputs(text, outputs, force)
    raw = read_text_file(text, encoding, hint="pass the file's encoding with --encoding (e.g. --encoding latin-1)")
    stopwords = set(DEFAULT_STOPWORDS)
    if stopwords_file is not None:
        stopwords |= load_stopwords(stopwords_file, encoding)
    result = build_lexicon(
        raw if no_clean else clean_text(raw),
        min_length=min_length, min_count=min_count, zipf_ceiling=zipf_ceiling,
        stopwords=stopwords, keep_fragments=keep_fragments,
    )
    if not result.words:
        raise UserInputError(f"{text}: no word passed the filters ({result.summary()}); nothing written")
    _write_atomic(output, result.write_words)
    if scored is not None:
        _write_atomic(scored, result.write_csv)
    click.echo(f"{output}: {len(result.words):,} words written")
    click.echo(result.table())


def _check_outputs(source: Path, outputs: list[Path], force: bool) -> None:
    if len({p.resolve() for p in outputs}) < len(outputs):
        raise UserInputError("--output and --scored must be different files")
    for path in outputs:
        if path.is_dir():
            raise UserInputError(f"{path} is a directory, not a file")
        if source.exists() and path.exists() and path.resolve() == source.resolve():
            raise UserInputError(f"{path}: the output would overwrite the input text")
        if path.exists() and not force:
            raise UserInputError(f"{path} already exists; pass --force to overwrite it")
        if not path.parent.is_dir():
            raise UserInputError(f"{path}: the folder {path.parent} does not exist")


def _write_atomic(path: Path, write: Callable[[IO[str]], None]) -> None:
    """Write through a temporary file in the same folder, then rename: never a half-written file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="") as stream:
            write(stream)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
