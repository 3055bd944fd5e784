"""Which llama.cpp pre-tokenizer type the exported GGUF names (``wake2vec export --pre``).

For a few byte-level pre-tokenizer types llama.cpp looks each chunk up whole before it merges
anything (``WHOLE_CHUNK_PRE``; Llama-3's ``llama-bpe`` among them). There a word form needs no
merge, so it cannot fire inside a longer word, which is what limits the export on the other
types (SmolLM2's ``smollm``, Qwen's ``qwen2``). A vocabulary may be read with such a type when
that changes nothing in ordinary text: Qwen2's expression differs from Llama-3's only in how
many digits make a chunk, and its vocabulary joins no two digits.

``--pre auto`` (the default) tries ``llama-bpe`` on the base vocabulary and takes it only if
llama.cpp then tokenises every line of the measured text, the commonest English words and
``PROBE`` exactly as the base GGUF does; ``--pre TYPE`` takes TYPE regardless (the table's
lines without lexicon words show what it changes); ``--pre base`` keeps the base model's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wake2vec.errors import UserInputError
from wake2vec.export import runtime
from wake2vec.export.llama_gguf import _english, write_edited
from wake2vec.export.plan import VocabFacts

AUTO, BASE = "auto", "base"
CANDIDATE = "llama-bpe"
# the text on which pre-tokenizer types part ways: runs of spaces after a newline and before
# digits, numbers of every length, upper-case clitics, marks glued to words, tabs, non-Latin
PROBE = [
    "    indented four spaces, then a word",
    "  two spaces and 6 or  7 after two spaces",
    "\tand a tab; then\t\ttwo",
    "1 12 123 1234 12345 123456, 3.14159 and 2,048,576 (2026-12-07)",
    "'Twas brillig; 'tis so. I'LL GO, YOU'RE IN, WE'VE IT, HE'D, SHE'S, DON'T",
    "\"quoted\" (parenthesised) [bracketed] {braced} <angled> --dashed-- _under_ *starred*",
    "https://example.org/path?query=1&x=2#frag user@example.com C:\\dir\\file.txt",
    "naïve café, señor, déjà vu, Æsir, Øresund, straße",
    "Привет мир, γειά σου κόσμε, שלום, مرحبا, 你好，世界。こんにちは",
    "emoji 🙂🙂 and symbols ©®™ — – … «» „“ ‘’",
    "end of a sentence.   Three spaces after it!!  ?? ...",
    "trailing spaces   ",
]


def _differing(base: Path, other: Path, lines: list[str]) -> list[str]:
    a, b = runtime.LlamaVocab(base), runtime.LlamaVocab(other)
    try:
        return [line for line in lines if a.tokenize("\n" + line) != b.tokenize("\n" + line)]
    finally:
        a.close()
        b.close()


def _english_lines() -> list[str]:
    words = [w for w, _ in _english()]
    return [" ".join(words[i : i + 25]) for i in range(0, len(words), 25)]


def choose(choice: str, facts: VocabFacts, reader: Any, base_vocab: Path, base_pre: str,
           lines: list[str], trial: Path) -> tuple[Path, str, str]:
    """The vocabulary to plan on, the pre-tokenizer type it names, and why, for ``--pre
    choice``. ``trial`` is where a copy naming another type is written."""
    if choice == BASE or (choice == AUTO and (facts.model != "gpt2" or facts.whole_chunks)):
        why = "the base model's" + (", read chunk by chunk" if facts.whole_chunks else "")
        return base_vocab, base_pre, why
    if facts.model != "gpt2":
        raise UserInputError(f"--pre {choice} names a byte-level pre-tokenizer; this run's "
                             f"vocabulary is SentencePiece (llama.cpp's {facts.model!r} type)")
    target = CANDIDATE if choice == AUTO else choice
    if target == base_pre:
        return base_vocab, base_pre, "the base model's"
    write_edited(reader, trial, {"tokens": facts.tokens, "types": facts.types,
                                 "merges": facts.merges}, pre=target)
    if choice != AUTO:
        return trial, target, f"--pre {target} (the base model's is {base_pre!r})"
    probe = [line for line in lines if line.strip()] + _english_lines() + PROBE
    differing = _differing(base_vocab, trial, probe)
    if differing:
        return base_vocab, base_pre, (
            f"the base model's: {target!r}, read chunk by chunk, would tokenise "
            f"{len(differing):,} of {len(probe):,} probe lines otherwise (such as "
            f"{differing[0][:60]!r}); --pre {target} takes it anyway")
    return trial, target, (
        f"{target!r}, read chunk by chunk: it tokenises all {len(probe):,} probe lines (the "
        f"text, common English, numbers, spacing) as the base model's {base_pre!r} does")
