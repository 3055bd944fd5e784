"""Bad input through the real CLI: every case ends with the outcome its table row states.

``error`` cases exit 2 with a message naming the file and the line, key or column, print no
traceback and write nothing (the case's folder, run directory included, is byte-identical
afterwards). ``warning`` cases are harmless quirks: the run goes on, says what it skipped and
completes. ``ok`` cases are quirks handled silently (normalised), checked by the words injected.

Every case runs ``wake2vec run`` on a copy of recipes/three_phase.toml (tiny steps) with
``--set`` overrides. In files and overrides ``{tmp}`` is the case's folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers_inputs import TINY, demo_recipe, set_args

ERROR, WARNING, OK = "error", "warning", "ok"
NFD = "antiharbou\u0301r"  # decomposed form of the lexicon word "antiharboúr"
WORDS = "ancienter\nancientrain\nangelly\n"  # demo-lexicon words the demo tokenizer splits
CORPUS = "{tmp}/corpus.txt"
LEXICON = "{tmp}/lexicon.txt"
MORPHEMES = "{tmp}/morphemes.csv"
GROUPS = "{tmp}/groups.jsonl"
DEVICES = "{tmp}/devices.jsonl"
MODEL = "{tmp}/model"
RUN = "{tmp}/run"
OLD_RUN = {
    "run/manifest.json": '{"status": "completed"}\n',
    "run/run.log": "an earlier run\n",
    "run/01-p1/new_rows.safetensors": b"\x00earlier rows",
}
AUTO_MAP = {
    "AutoConfig": "configuration_wake.WakeConfig",
    "AutoModelForCausalLM": "modeling_wake.WakeForCausalLM",
}


@dataclass(frozen=True)
class Case:
    id: str
    input: str  # what is wrong with the input, in words
    outcome: str  # ERROR, WARNING or OK
    excerpts: tuple[str, ...]  # text the output must contain ({tmp}: the case's folder)
    files: dict[str, str | bytes] = field(default_factory=dict)  # written under {tmp}
    sets: tuple[str, ...] = ()  # --set overrides
    args: tuple[str, ...] = ()  # more command-line arguments
    output_dir: str = RUN
    injected: tuple[str, ...] = ()  # words the run must have injected (WARNING and OK cases)


# fmt: off
CASES = [
    # ------------------------------------------------------------------ corpus
    Case("corpus-empty", "corpus file of zero bytes", ERROR,
         (f"{CORPUS}: corpus file is empty",),
         {"corpus.txt": b""}, (f"data.corpus={CORPUS}",)),
    Case("corpus-whitespace", "corpus of blank lines only", ERROR,
         (f"{CORPUS}: corpus file is empty",),
         {"corpus.txt": "\n  \n\t\n"}, (f"data.corpus={CORPUS}",)),
    Case("corpus-binary", "a PNG image given as the corpus", ERROR,
         ("{tmp}/corpus.png: looks like a binary file (a NUL character at offset 8)",),
         {"corpus.png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00"},
         ("data.corpus={tmp}/corpus.png",)),
    Case("corpus-latin-1", "Latin-1 corpus read as UTF-8", ERROR,
         (f"{CORPUS}: line 2, column 10 (byte offset 18): not valid utf-8 text",
          "set data.encoding in the recipe"),
         {"corpus.txt": "riverrun\npast Eve é\n".encode("latin-1")}, (f"data.corpus={CORPUS}",)),
    Case("corpus-utf-16", "UTF-16 corpus (as Windows tools save it) read as UTF-8", ERROR,
         (f'{CORPUS}: line 1: the file is UTF-16 text', 'set data.encoding = "utf-16"'),
         {"corpus.txt": "riverrun, past Eve and Adam's\n".encode("utf-16")},
         (f"data.corpus={CORPUS}",)),
    Case("corpus-one-piece", "corpus of one unbroken word: nothing to split off for validation",
         ERROR, (f"{CORPUS}: the corpus is a single unbroken piece of text",),
         {"corpus.txt": "riverrun" * 50}, (f"data.corpus={CORPUS}",)),
    Case("corpus-shorter-than-a-block", "corpus of 40 short lines, fewer tokens than a block",
         ERROR, (f"{CORPUS}: the corpus has", "fewer than one block of data.seq_len = 64 tokens"),
         {"corpus.txt": "riverrun, past Eve and Adam's,\n" * 40}, (f"data.corpus={CORPUS}",)),
    Case("corpus-jsonl-broken-line", "JSONL corpus whose third line is cut short", ERROR,
         ("{tmp}/corpus.jsonl:3: not valid JSON (Unterminated string starting at at column 10)",),
         {"corpus.jsonl": '{"text": "riverrun, past Eve"}\n\n{"text": "and Ad\n{"text": "x"}\n'},
         ("data.corpus={tmp}/corpus.jsonl",)),
    Case("corpus-jsonl-no-text", "JSONL corpus with a line lacking the \"text\" key", ERROR,
         ('{tmp}/corpus.jsonl:2: key "text" is missing (keys: \'content\')',),
         {"corpus.jsonl": '{"text": "riverrun"}\n{"content": "past Eve"}\n'},
         ("data.corpus={tmp}/corpus.jsonl",)),
    Case("corpus-directory", "a directory given as the corpus", ERROR,
         ("data.corpus: is a directory, not a file: {tmp}",),
         {"lexicon.txt": WORDS}, ("data.corpus={tmp}",)),
    # ------------------------------------------------------------------ lexicon
    Case("lexicon-blank-lines", "blank lines between the words", OK, (),
         {"lexicon.txt": "\nancienter\n\n\nancientrain\n\n"}, (f"data.lexicon={LEXICON}",),
         injected=("ancienter", "ancientrain")),
    Case("lexicon-surrounding-whitespace", "words with spaces, tabs and CRLF around them", OK, (),
         {"lexicon.txt": "  ancienter\t\r\n\tancientrain  \r\n"}, (f"data.lexicon={LEXICON}",),
         injected=("ancienter", "ancientrain")),
    Case("lexicon-nfd", "a word in decomposed (NFD) form", OK, (),
         {"lexicon.txt": f"ancienter\n{NFD}\n"}, (f"data.lexicon={LEXICON}",),
         injected=("ancienter", "antiharboúr")),
    Case("lexicon-duplicates", "the same word twice, once more in NFD form", WARNING,
         (f"{LEXICON}: 2 duplicate lexicon entries skipped (line 3 repeats line 1 ('ancienter'); "
          f"line 4 repeats line 2 ({NFD!r}))",),
         {"lexicon.txt": f"ancienter\nantiharboúr\nancienter\n{NFD}\n"},
         (f"data.lexicon={LEXICON}",), injected=("ancienter", "antiharboúr")),
    Case("lexicon-control-character", "an entry holding a BEL control character", ERROR,
         (f"{LEXICON}: 1 lexicon entry cannot be used; fix or remove it:",
          f"{LEXICON}:2: 'bad\\x07bell': contains a control or format character (U+0007)"),
         {"lexicon.txt": "ancienter\nbad\x07bell\n"}, (f"data.lexicon={LEXICON}",)),
    Case("lexicon-very-long-entry", "an entry of 5,000 characters (a paragraph pasted in)", ERROR,
         (f"{LEXICON}:2: 'xxxxxxxxxx",
          "... (5000 characters): longer than 100 characters (5000)"),
         {"lexicon.txt": "ancienter\n" + "x" * 5000 + "\n"}, (f"data.lexicon={LEXICON}",)),
    Case("lexicon-inner-space", "a two-word entry, which cannot be one token", ERROR,
         (f"{LEXICON}:3: 'past eve': contains whitespace (U+0020 SPACE)",),
         {"lexicon.txt": "ancienter\nangelly\npast eve\n"}, (f"data.lexicon={LEXICON}",)),
    Case("lexicon-marker-prefix", "an entry spelt with SentencePiece's ▁ marker", ERROR,
         (f"{LEXICON}:1: '▁riverrun': starts with U+2581 LOWER ONE EIGHTH BLOCK",
          "write the plain word"),
         {"lexicon.txt": "▁riverrun\nancienter\n"}, (f"data.lexicon={LEXICON}",)),
    Case("lexicon-only-comments", "a lexicon of comments and blank lines", ERROR,
         (f"{LEXICON}: the lexicon holds no usable words",),
         {"lexicon.txt": "# words to add\n\n# (none yet)\n"}, (f"data.lexicon={LEXICON}",)),
    Case("lexicon-missing", "data.lexicon names a file that does not exist", ERROR,
         (f"data.lexicon: file not found: {LEXICON}",), sets=(f"data.lexicon={LEXICON}",)),
    Case("lexicon-latin-1", "Latin-1 lexicon read as UTF-8", ERROR,
         (f"{LEXICON}:2: not valid utf-8 text", "set data.encoding"),
         {"lexicon.txt": "ancienter\nfête\n".encode("latin-1")}, (f"data.lexicon={LEXICON}",)),
    Case("lexicon-all-known", "every word is already one token of the tokenizer", ERROR,
         (f"{LEXICON}: no lexicon word is new to the tokenizer", "3 already known ('the': "),
         {"lexicon.txt": "the\nand\nof\n"}, (f"data.lexicon={LEXICON}",)),
    # ------------------------------------------------------------------ morphology
    Case("morphemes-missing-column", "a morpheme CSV row with only its type", ERROR,
         (f"{MORPHEMES}:3: column 2 (morpheme) is missing",),
         {"morphemes.csv": "type,morpheme,example1\nprefix,un,undo\nsuffix\n"},
         (f"data.morphemes={MORPHEMES}",)),
    Case("morphemes-wrong-header", "a morpheme CSV whose header names other columns", ERROR,
         (f"{MORPHEMES}:1: column 1 (type): unknown type 'kind'",
          "a header row must read type,morpheme,example1"),
         {"morphemes.csv": "kind,affix,example\nprefix,un,undo\n"},
         (f"data.morphemes={MORPHEMES}",)),
    Case("morphemes-unknown-type", "a morpheme of type 'infix'", ERROR,
         (f"{MORPHEMES}:2: column 1 (type): unknown type 'infix'; expected 'prefix' or 'suffix'",),
         {"morphemes.csv": "prefix,un,undo\ninfix,bloody,absobloodylutely\n"},
         (f"data.morphemes={MORPHEMES}",)),
    Case("morphemes-empty-morpheme", "a morpheme CSV row with an empty morpheme", ERROR,
         (f"{MORPHEMES}:2: column 2 (morpheme) is empty",),
         {"morphemes.csv": "prefix,un,undo\nsuffix, ,going\n"}, (f"data.morphemes={MORPHEMES}",)),
    Case("morpheme-groups-broken-line", "morpheme groups (JSONL) with one broken line", ERROR,
         (f"{GROUPS}:2: not valid JSON",),
         {"groups.jsonl": '{"morpheme": "un", "type": "prefix", "examples": ["undo"]}\n'
                          '{"morpheme": "re", "type": \n'},
         (f"data.morpheme_groups={GROUPS}",)),
    Case("morpheme-groups-missing-key", "a morpheme group without its morpheme", ERROR,
         (f"{GROUPS}:1: key 'morpheme' is missing or empty",),
         {"groups.jsonl": '{"type": "prefix", "examples": ["undo"]}\n'},
         (f"data.morpheme_groups={GROUPS}",)),
    Case("device-groups-not-an-object", "a device-groups line that is a JSON list", ERROR,
         (f"{DEVICES}:1: expected a JSON object, got list",),
         {"devices.jsonl": '["portmanteau", "riverrun"]\n'}, (f"data.device_groups={DEVICES}",)),
    Case("morphemes-utf-16", "a morpheme CSV saved as UTF-16", ERROR,
         (f"{MORPHEMES}: line 1: the file is UTF-16 text", "convert the file to UTF-8"),
         {"morphemes.csv": "prefix,un,undo\n".encode("utf-16")}, (f"data.morphemes={MORPHEMES}",)),
    # ------------------------------------------------------------------ recipe values
    Case("seq-len-1e9", "data.seq_len = 10^9", ERROR,
         ("data.seq_len: Input should be less than or equal to 131072 (got 1000000000)",),
         sets=("data.seq_len=1000000000",)),
    Case("seq-len-beyond-model", "data.seq_len longer than the model's 512 positions", ERROR,
         ("data.seq_len = 1024 is longer than the model", "(max_position_embeddings = 512)"),
         sets=("data.seq_len=1024",)),
    Case("learning-rate-nan", "a NaN learning rate", ERROR,
         ("phases[0].learning_rate: Input should be a finite number (got nan)",),
         sets=("phases[0].learning_rate=nan",)),
    Case("steps-zero", "a phase of zero steps", ERROR,
         ("phases[0].steps: Input should be greater than 0 (got 0)",),
         sets=("phases[0].steps=0",)),
    Case("encoding-unknown", "data.encoding names no codec", ERROR,
         ("data.encoding: unknown text encoding 'latin-9000'",), sets=("data.encoding=latin-9000",)),
    # ------------------------------------------------------------------ model
    Case("model-path-missing", "model.name is a directory that does not exist", ERROR,
         ("model.name: directory not found: {tmp}/no-such-model",),
         sets=("model.family=auto", "model.name={tmp}/no-such-model")),
    Case("model-path-missing-relative", "model.name relative to the recipe, parent exists", ERROR,
         ("model.name: directory not found: {tmp}/models/my-llama",),
         {"models/other/config.json": "{}"}, ("model.family=auto", "model.name=models/my-llama")),
    Case("model-config-malformed", "model directory whose config.json is cut short", ERROR,
         (f"{MODEL}/config.json is not valid JSON (line 2, column 18: Expecting value)",),
         {"model/config.json": '{"model_type": "llama",\n  "hidden_size": }\n'},
         ("model.family=auto", f"model.name={MODEL}")),
    Case("model-config-missing", "model directory without a config.json", ERROR,
         (f"{MODEL} has no config.json",),
         {"model/weights.bin": b"\x00"}, ("model.family=auto", f"model.name={MODEL}")),
    Case("model-unknown-architecture", "config.json with an unknown model_type", ERROR,
         (f"{MODEL}/config.json: model_type 'wakeformer' is not an architecture transformers",
          "wake2vec_register_model_families"),
         {"model/config.json": '{"model_type": "wakeformer"}'},
         ("model.family=auto", f"model.name={MODEL}")),
    Case("model-not-causal", "config.json of an encoder-decoder model (T5)", ERROR,
         (f"{MODEL}/config.json: model_type 't5' is not a causal language model",),
         {"model/config.json": '{"model_type": "t5"}'}, ("model.family=auto", f"model.name={MODEL}")),
    Case("model-remote-code", "config.json that names its own code (auto_map)", ERROR,
         (f"{MODEL}/config.json: model_type 'wakeformer'",
          "set model.trust_remote_code = true if you trust it"),
         {"model/config.json": json.dumps({"model_type": "wakeformer", "auto_map": AUTO_MAP}),
          "model/modeling_wake.py": "open('EXECUTED', 'w').write('remote code ran')\n"},
         ("model.family=auto", f"model.name={MODEL}")),
    # ------------------------------------------------------------------ output directory
    Case("output-under-a-file", "--output-dir inside a regular file", ERROR,
         ("cannot write the run directory {tmp}/notes.txt/run",),
         {"notes.txt": "my notes\n"}, output_dir="{tmp}/notes.txt/run"),
    Case("output-read-only-filesystem", "--output-dir on /proc (read-only even for root)", ERROR,
         ("cannot write the run directory /proc/wake2vec-run",), output_dir="/proc/wake2vec-run"),
    Case("output-existing-run", "an earlier run in the output directory, no flag", ERROR,
         ("run directory {tmp}/run already exists; pass --resume to continue it or --force",),
         dict(OLD_RUN)),
    Case("force-with-bad-corpus", "--force over an earlier run, with an empty corpus", ERROR,
         (f"{CORPUS}: corpus file is empty",),
         {**OLD_RUN, "corpus.txt": ""}, (f"data.corpus={CORPUS}",), ("--force",)),
    Case("resume-with-bad-lexicon", "--resume an earlier run, with a lexicon of a control char",
         ERROR, (f"{LEXICON}:1: '\\x1b[31m': contains a control or format character",),
         {**OLD_RUN, "lexicon.txt": "\x1b[31m\nancienter\n"}, (f"data.lexicon={LEXICON}",),
         ("--resume",)),
    Case("resume-nothing", "--resume on a folder that holds no run", ERROR,
         ("nothing to resume: {tmp}/run holds no manifest.json",), {"run/notes.txt": "x"},
         args=("--resume",)),
]
# fmt: on


def test_the_table_covers_what_issue_8_asks_for():
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)
    assert {c.outcome for c in CASES} == {ERROR, WARNING, OK}
    for case in CASES:
        assert case.input and (case.excerpts or case.outcome == OK), case.id


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file and folder under ``root`` with its bytes (None for a folder)."""
    return {
        str(p.relative_to(root)): None if p.is_dir() else p.read_bytes()
        for p in sorted(root.rglob("*"))
    }


def injected_words(run_dir: Path) -> set[str]:
    from safetensors import safe_open

    with safe_open(str(run_dir / "injected_rows.safetensors"), "pt") as fh:
        return set(json.loads(fh.metadata()["words"]))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)  # a stray runs/ folder would show in the snapshot
    recipe = demo_recipe(tmp_path)
    for name, content in case.files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", newline="")
    sets = [s.replace("{tmp}", str(tmp_path)) for s in case.sets]
    output_dir = Path(case.output_dir.replace("{tmp}", str(tmp_path)))
    before = snapshot(tmp_path)

    result = cli(
        "run", str(recipe), "--output-dir", str(output_dir), *case.args, *set_args(*TINY, *sets)
    )

    output = result.output
    assert "Traceback" not in output
    for excerpt in case.excerpts:
        assert excerpt.replace("{tmp}", str(tmp_path)) in output, output
    assert not (tmp_path / "EXECUTED").exists()  # no code from a model directory ran
    if case.outcome == ERROR:
        assert result.exit_code == 2, output
        assert snapshot(tmp_path) == before  # nothing written, nothing overwritten
        return
    assert result.exit_code == 0, output
    assert f"run completed: {output_dir}" in output
    assert (" duplicate " in output) == (case.outcome == WARNING)
    assert injected_words(output_dir) == set(case.injected)


def test_a_jsonl_corpus_is_read_line_by_line(tmp_path: Path):
    from wake2vec.vocab.files import read_corpus

    path = tmp_path / "corpus.jsonl"
    lines = [
        {"text": "riverrun, past Eve\r\nand Adam's", "id": 1},
        {"text": "  "},
        {"text": "from swerve of shore to Ade\u0301m"},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n", encoding="utf-8")
    assert read_corpus(path) == (
        "riverrun, past Eve\nand Adam's\n\nfrom swerve of shore to Ad\u00e9m\n"
    )
