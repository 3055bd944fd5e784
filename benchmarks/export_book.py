"""The GGUF export at book length: SmolLM2-135M (the test cache's GGUF) taught the whole
44,990-word Wake lexicon over a 2 MB text (1.5 MB mixing lexicon and English words,
``wake2vec.testing.lexicon_text``, then 0.5 MB of English, ``english_text``), one P1 step, then
``wake2vec export`` to f16; prints the export's table (README, "Export to llama.cpp").
``--model llama2`` does the same on a random-weight stand-in with the real Llama-2 tokenizer
file (SentencePiece, llama.cpp's ``llama`` vocabulary type); ``--model llama3`` with the real
Llama-3.2 file (byte-level BPE, pre-tokenizer ``llama-bpe``: llama.cpp takes whole chunks);
``--model qwen`` with the real Qwen file (pre-tokenizer ``qwen2``). ``--pre`` passes
``wake2vec export --pre`` on.

    python benchmarks/export_book.py [--model smollm2|llama2|llama3|qwen] [--workdir DIR] [--risk-limit X]
        [--pre TYPE]

Needs the test assets (``python -m wake2vec.testing fetch``) and llama-cpp-python. Takes about
6 minutes on 2 cores (the run about 3, the export about 2).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LEXICON = Path(__file__).resolve().parents[2] / "shared" / "data" / "wake_lexicon.txt"
# --model: random-weight stand-ins (wake2vec.testing.REAL_STAND_INS key, real tokenizer file)
STAND_INS = {"llama2": ("llama", "llama2"), "llama3": ("llama-3", "llama3_2"),
             "qwen": ("qwen2", "qwen3")}

RECIPE = """\
[run]
name = "export-book"
seed = 7

[model]
name = "{model}"
dtype = "float32"

[data]
corpus = "{corpus}"
lexicon = "{lexicon}"
seq_len = 128
validation_fraction = 0.002

[injection]
injector = "whole-word"
initializer = "subword-mean"

[[phases]]
name = "p1"
strategy = "embed-only"
steps = 1
learning_rate = 1e-4
batch_size = 2
eval_batches = 2

[analysis]
metrics = []
baselines = false

[report]
html = false
"""


def main() -> int:
    from wake2vec.testing import (
        build_real_stand_in,
        english_text,
        lexicon_text,
        real_tokenizer_dir,
        smollm2_gguf,
    )

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("smollm2", *STAND_INS), default="smollm2")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--lexicon", type=Path, default=LEXICON)
    parser.add_argument("--risk-limit", default=None)
    parser.add_argument("--pre", default=None, help="wake2vec export --pre TYPE")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="wake2vec-export-book-"))
    work.mkdir(parents=True, exist_ok=True)
    words = args.lexicon.read_text(encoding="utf-8").split()
    corpus = work / "book.txt"
    if not corpus.is_file():  # seeded: a later call in the same --workdir reads the same text
        corpus.write_text(lexicon_text(words, 1_500_000, seed=1) + english_text(500_000, seed=2),
                          encoding="utf-8")
    recipe = work / "recipe.toml"
    if args.model in STAND_INS:
        key, tokenizer = STAND_INS[args.model]
        model = work / f"{args.model}-stand-in"
        if not (model / "config.json").is_file():
            build_real_stand_in(model, key, real_tokenizer_dir(tokenizer))
    else:
        model = smollm2_gguf()
    recipe.write_text(RECIPE.format(model=model.as_posix(), corpus=corpus.as_posix(),
                                    lexicon=args.lexicon.as_posix()), encoding="utf-8")
    run = work / "run"
    if not (run / "final" / "model" / "config.json").is_file():
        subprocess.run([sys.executable, "-m", "wake2vec", "run", str(recipe), "--output-dir",
                        str(run)], check=True)
    out = work / f"{args.model}-wake{'.' + args.pre if args.pre else ''}.f16.gguf"
    command = [sys.executable, "-m", "wake2vec", "export", str(run), "--gguf", str(out),
               "--outtype", "f16", "--min-coverage", "0"]
    if args.risk_limit is not None:
        command += ["--risk-limit", str(args.risk_limit)]
    if args.pre is not None:
        command += ["--pre", args.pre]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        print(done.stdout, done.stderr, file=sys.stderr)
        return 1
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB, the largest child
    report = json.loads(out.with_name(out.name.removesuffix(".gguf") + ".export.json")
                        .read_text(encoding="utf-8"))
    for label, value in report["table"]:
        print(f"{label:<48} {value}")
    print(f"{'export, whole command':<48} {seconds:.1f} s, peak RSS {peak // 1024} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
