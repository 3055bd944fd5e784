"""``wake2vec export``: a run's final model for llama.cpp, with its new words kept."""

from __future__ import annotations

from pathlib import Path

import click

from wake2vec.export.plan import WHOLE_CHUNK_PRE
from wake2vec.export.runtime import OUTTYPES


@click.command("export")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--gguf", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The GGUF file to write.")
@click.option("--outtype", type=click.Choice(OUTTYPES), default="auto", show_default=True,
              help="Tensor type, as llama.cpp's converter offers it.")
@click.option("--min-coverage", type=click.FloatRange(0.0, 1.0), default=0.99,
              show_default=True,
              help="Refuse (exit 2) when llama.cpp would produce the trained ids for a smaller "
                   "share of the lexicon occurrences in the text.")
@click.option("--risk-limit", type=click.FloatRange(min=0.0), default=1e-5, show_default=True,
              help="Leave out a word form whose merges would fire inside ordinary English "
                   "words more often than this per word of text (lower: fewer spurious ids, "
                   "lower coverage).")
@click.option("--text", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Text to measure on (default: the run's corpus).")
@click.option("--pre", "read_as", default="auto", show_default=True, metavar="TYPE",
              type=click.Choice(["auto", "base", *sorted(WHOLE_CHUNK_PRE)]),
              help="The llama.cpp pre-tokenizer type the GGUF names (byte-level vocabularies). "
                   "For llama-bpe and the other types llama.cpp reads chunk by chunk, every word "
                   "enters as its string, with no merge that could fire inside a longer word "
                   "(a bare word, where the merges keep marks apart, also by a chain that fires "
                   "in none of the commonest English words). auto: llama-bpe where it tokenises "
                   "the text, common English and a probe of numbers and spacing as the base "
                   "model's type does (Qwen), else the base's (SmolLM2: indentation differs); "
                   "base: the base model's; TYPE: that one, whatever it changes (the table "
                   "shows it).")
@click.option("--llama-cpp", "tree", type=click.Path(file_okay=False, path_type=Path),
              help="A llama.cpp source tree whose convert_hf_to_gguf.py to use (default: the "
                   "pinned one, fetched into ~/.cache/wake2vec/llama.cpp; also "
                   "WAKE2VEC_LLAMA_CPP).")
def export(run_dir: Path, out: Path, outtype: str, min_coverage: float, risk_limit: float,
           text: Path | None, read_as: str, tree: Path | None) -> None:
    """Write RUN_DIR's final model as a GGUF whose tokenizer, in llama.cpp, produces the rows
    the run trained for its lexicon words.

    \b
    The words enter llama.cpp's own tokenizer (vocabulary entries and merges for byte-level
    BPE, entries alone where llama.cpp looks chunks up whole, as for Llama-3; pieces and
    scores for SentencePiece) on the run's ids; the export then tokenises
    the text in llama.cpp and prints coverage of the lexicon occurrences, spurious new ids by
    cause and lines without lexicon words against the base model, and writes that table beside
    the GGUF (NAME.export.json). Below --min-coverage it writes no GGUF and exits 2.
    Needs llama-cpp-python: pip install 'wake2vec[llama-cpp]'.
    """
    from wake2vec.export.driver import export_run
    from wake2vec.export.llama_gguf import ExportRefused

    try:
        result = export_run(run_dir, out, outtype=outtype, min_coverage=min_coverage,
                            risk_limit=risk_limit, text=text, tree=tree, read_as=read_as,
                            progress=lambda msg: click.echo(msg, err=True))
    except ExportRefused as refused:
        _show(refused.rows)
        raise
    _show(result.table["table"])
    click.echo(f"wrote {result.gguf} and {result.report}")


def _show(rows: list[tuple[str, str]]) -> None:
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        click.echo(f"{label:<{width}}  {value}")
