"""``wake2vec export RUN --gguf OUT.gguf``: the run's final model as a GGUF whose tokenizer, run
by llama.cpp, produces the trained rows for the lexicon words.

Steps: the final model's folder, with its tokenizer put back to the base model's (the
whole-word steps, which are marked by U+FDD0, taken out), goes through llama.cpp's converter
once for the vocabulary alone; the words are planned into that vocabulary (``plan``) and the
edited vocabulary is checked form by form and measured on the run's corpus in llama.cpp
(``measure``); below the coverage asked for, nothing more is written (exit 2, with the
figures). Otherwise the model (with a row for each intermediate piece) goes through the
converter at the output type asked for and its tokenizer keys are replaced with the plan's.
The table is written beside the GGUF as ``<name>.export.json``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from wake2vec.errors import UserInputError
from wake2vec.export import runtime
from wake2vec.export.plan import (
    BARE,
    CONTEXT,
    MERGES,
    SPACE,
    USER_DEFINED,
    WHOLE,
    Form,
    Plan,
    Risk,
    VocabFacts,
    choose,
    plan_forms,
    screen,
)

PROBE_WORDS = 40_000  # the commonest English words, where a chain's pieces must not be left
RISK_LIMIT = 1e-5  # a form firing more often per word of ordinary English is left out
GLUED = "("  # a mark a whole-chunk pre-tokenizer glues to the letters after it

MARKER = "\ufdd0"  # the whole-word injector's marker
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "tokenizer.model")
NORMAL, UNUSED_TYPE, USER_TYPE = 1, 5, 4  # llama.cpp token types
# a left-out form's id is named ``[wake2vec-unexported-ID]`` (an unused token in llama.cpp)
UNEXPORTED = "[wake2vec-unexported-"


class ExportRefused(UserInputError):
    """The exported tokenizer's coverage is below what was asked for."""

    def __init__(self, message: str, rows: list[tuple[str, str]]):
        super().__init__(message)
        self.rows = rows


@dataclass
class ExportResult:
    table: dict[str, Any]
    gguf: Path | None
    report: Path


def _without_marker(part: Any) -> Any:
    """A normalizer / pre-tokenizer / decoder JSON with the whole-word steps taken out."""
    if part is None or MARKER not in json.dumps(part, ensure_ascii=False):
        return part
    for key in ("normalizers", "pretokenizers", "decoders"):
        if isinstance(part.get(key), list):
            kept = [p for p in part[key] if MARKER not in json.dumps(p, ensure_ascii=False)]
            return None if not kept else kept[0] if len(kept) == 1 else {**part, key: kept}
    return None


def read_forms(state: dict[str, Any]) -> tuple[list[Form], dict[str, Any]]:
    """The run's word forms (from its added tokens) and the base tokenizer's JSON."""
    forms = []
    for added in state.get("added_tokens", []):
        content = added["content"]
        if added.get("special") or not content.endswith(MARKER):
            continue
        text = content[:-1]
        if text[:1] in (" ", "\u2581"):
            forms.append(Form(text[1:], SPACE, int(added["id"])))
        else:
            forms.append(Form(text, BARE, int(added["id"])))
    base = json.loads(json.dumps(state))
    base["added_tokens"] = [t for t in state.get("added_tokens", [])
                            if not t["content"].endswith(MARKER)]
    for key in ("normalizer", "pre_tokenizer", "decoder"):
        base[key] = _without_marker(state.get(key))
    return forms, base


def read_facts(path: Path) -> tuple[VocabFacts, Any]:
    import gguf

    reader = gguf.GGUFReader(str(path))

    def get(key: str, default: Any = None) -> Any:
        found = reader.fields.get(key)
        return found.contents() if found is not None else default

    facts = VocabFacts(model=get(gguf.Keys.Tokenizer.MODEL), tokens=get(gguf.Keys.Tokenizer.LIST),
                       types=get(gguf.Keys.Tokenizer.TOKEN_TYPE, []),
                       scores=get(gguf.Keys.Tokenizer.SCORES, []),
                       merges=get(gguf.Keys.Tokenizer.MERGES, []),
                       pre=get(gguf.Keys.Tokenizer.PRE, "") or "")
    if facts.model not in ("gpt2", "llama"):
        raise UserInputError(f"llama.cpp's converter made a {facts.model!r} vocabulary; wake2vec "
                             "exports words into 'gpt2' (byte-level BPE) and 'llama' "
                             "(SentencePiece) vocabularies")
    return facts, reader


def scores_from_merges(facts: VocabFacts, state: dict[str, Any]) -> list[float] | None:
    """SentencePiece scores rebuilt from a BPE ``tokenizer.json``'s merges, where llama.cpp's
    converter gave every piece the same score (it does so when the folder has no
    ``tokenizer.model``, which transformers 5 does not save): a piece scores minus the rank of
    the first merge that makes it, so llama.cpp joins pieces in the order the merges do.
    ``None`` where the scores already differ or the JSON has no merges."""
    if facts.model != "llama" or len(set(facts.scores)) > 1:
        return None
    merges = (state.get("model") or {}).get("merges") or []
    if not merges:
        return None
    rank: dict[str, int] = {}
    for i, merge in enumerate(merges):
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        rank.setdefault(left + right, i)
    floor = -float(len(merges))  # pieces no merge makes: single symbols, bytes, specials
    return [-float(rank[t]) if t in rank else floor for t in facts.tokens]


def edited_keys(facts: VocabFacts, plan: Plan, rows: int) -> dict[str, Any]:
    """The tokenizer keys with the plan's strings on the run's ids and the pieces after."""
    total = max(rows, max(plan.pieces, default=-1) + 1)
    tokens = list(facts.tokens) + [f"[PAD{i}]" for i in range(len(facts.tokens), total)]
    types = list(facts.types) + [UNUSED_TYPE] * (total - len(facts.types))
    floor = min(facts.scores, default=0.0) - 1.0
    scores = list(facts.scores) + [floor] * (total - len(facts.scores)) if facts.scores else []
    for f in plan.forms:
        if f.how in (MERGES, WHOLE):
            tokens[f.id], types[f.id] = f.text, NORMAL
        elif f.how == USER_DEFINED:
            tokens[f.id], types[f.id] = f.raw, USER_TYPE
        else:
            tokens[f.id], types[f.id] = f"{UNEXPORTED}{f.id}]", UNUSED_TYPE
    for text, i in plan.strings.items():
        if i in plan.pieces:
            tokens[i], types[i] = text, NORMAL
    if scores:
        for text, score in plan.scores.items():
            scores[plan.strings.get(text, -1)] = score
        scores = scores[:total]
    keys: dict[str, Any] = {"tokens": tokens, "types": types}
    if scores:
        keys["scores"] = scores
    if facts.merges:
        keys["merges"] = list(facts.merges) + plan.merges
    return keys


def write_edited(reader: Any, out: Path, keys: dict[str, Any], pre: str | None = None) -> None:
    """Copy a GGUF with its tokenizer keys replaced (the gguf package's own copier)."""
    import gguf
    from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

    array, Key = gguf.GGUFValueType.ARRAY, gguf.Keys.Tokenizer
    new = {Key.LIST: MetadataDetails(array, keys["tokens"], sub_type=gguf.GGUFValueType.STRING),
           Key.TOKEN_TYPE: MetadataDetails(array, keys["types"], sub_type=gguf.GGUFValueType.INT32)}
    if "scores" in keys:
        new[Key.SCORES] = MetadataDetails(array, keys["scores"], sub_type=gguf.GGUFValueType.FLOAT32)
    if "merges" in keys:
        new[Key.MERGES] = MetadataDetails(array, keys["merges"], sub_type=gguf.GGUFValueType.STRING)
    if pre is not None:
        new[Key.PRE] = MetadataDetails(gguf.GGUFValueType.STRING, pre)
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    writer = gguf.GGUFWriter(str(out), arch=arch, endianess=reader.endianess)
    alignment = reader.fields.get(gguf.Keys.General.ALIGNMENT)
    if alignment is not None:
        writer.data_alignment = alignment.contents()
    copy_with_new_metadata(reader, writer, new, [])


def _in_context(vocab: runtime.LlamaVocab, forms: list[Form]
                ) -> tuple[dict[str, list[int]], dict[tuple[str, str], list[int]]]:
    prefix = {form: vocab.tokenize(lead) for form, (lead, _) in CONTEXT.items()}
    found = {(f.word, f.form): vocab.tokenize("".join(CONTEXT[f.form]) + f.word) for f in forms}
    return prefix, found


def _check(vocab: runtime.LlamaVocab, plan: Plan, glued: bool = False) -> int:
    """Every exported form, in the context that selects it, must be its one id; with
    ``glued`` a bare form's chain also right after a mark the pre-tokenizer glues on (where
    it fails, the form keeps its whole string: re-planned without the chain)."""
    prefix, found = _in_context(vocab, plan.exported())
    mark = vocab.tokenize(GLUED)
    failed = 0
    for f in plan.exported():
        got = found[f.word, f.form]
        lead = prefix[f.form]
        if got[: len(lead)] != lead or got[len(lead):] != [f.id]:
            f.how, f.reason = "", f"llama.cpp does not make it one id in context (got {got})"
            failed += 1
        elif (glued and f.how == MERGES and f.form == BARE
              and vocab.tokenize(GLUED + f.word) != [*mark, f.id]):
            f.how = WHOLE
            failed += 1
    return failed


def reasons(plan: Plan) -> dict[str, Any]:
    """The forms left out, by reason (figures in parentheses set aside), with examples."""
    import re

    by: dict[str, list[str]] = {}
    for f in plan.forms:
        if not f.how:
            by.setdefault(re.sub(r" \(.*\)$", "", f.reason), []).append(f"{f.word} ({f.form})")
    return {why: {"count": len(items), "sample": items[:6]}
            for why, items in sorted(by.items(), key=lambda kv: -len(kv[1]))}


def counts(plan: Plan) -> dict[str, int]:
    found = Counter(f.how for f in plan.forms)
    return {WHOLE: found[WHOLE], MERGES: found[MERGES], USER_DEFINED: found[USER_DEFINED],
            "": found[""],
            "pieces": len(plan.pieces)}


def plan_export(base_vocab: Path, forms: list[Form], rows: int, risk_limit: float = RISK_LIMIT
                ) -> tuple[Plan, VocabFacts, Any]:
    """Plan the forms into the base vocabulary, check them in llama.cpp, re-plan without the
    forms that fail (at most three times)."""
    facts, reader = read_facts(base_vocab)
    vocab = runtime.LlamaVocab(base_vocab)
    prefix, found = _in_context(vocab, forms)
    screen(facts, forms, prefix, found)
    glued = facts.glued_chains
    risk = Risk(None if facts.whole_chunks and not glued else vocab.tokenize, prefix, _english())
    vocab.close()
    kept_risk = choose(facts, forms, risk, risk_limit, {f.word for f in forms})
    for _ in range(3):
        for f in forms:
            if f.how == MERGES:
                f.how = ""
        plan = plan_forms(facts, forms, max(rows, len(facts.tokens)), risk)
        with tempfile.TemporaryDirectory(dir=base_vocab.parent) as tmp:
            trial = Path(tmp) / "trial.gguf"
            write_edited(reader, trial, edited_keys(facts, plan, rows))
            checker = runtime.LlamaVocab(trial)
            failed = _check(checker, plan, glued)
            checker.close()
        if not failed:
            break
    plan.risk = kept_risk
    return plan, facts, reader


@cache  # read twice in an export: the pre-tokenizer probe and the risk probe
def _english() -> list[tuple[str, float]]:
    """The commonest English words with their frequencies (wordfreq), contractions among them
    ("don't", "you're": a chain's piece "'t" would fire in every one), also capitalised (a
    tenth as often) and possessive (a hundredth)."""
    from wordfreq import top_n_list, word_frequency

    words = [w for w in top_n_list("en", PROBE_WORDS)
             if w.replace("'", "").isalpha() and w[0] != "'"]
    weighted = [(w, word_frequency(w, "en")) for w in words]
    return (weighted + [(w.capitalize(), f / 10) for w, f in weighted]
            + [(w + "'s", f / 100) for w, f in weighted[:10_000] if w.isalpha()])


def report_path(out: Path) -> Path:
    return out.with_name(out.name.removesuffix(".gguf") + ".export.json")


def default_lines(run_dir: Path, manifest: dict[str, Any], text: Path | None) -> list[str]:
    """The text measured: ``text`` or the run's corpus."""
    if text is None:
        corpus = ((manifest.get("recipe") or {}).get("data") or {}).get("corpus")
        if not corpus:
            raise UserInputError(f"{run_dir}'s recipe names no corpus; pass --text FILE")
        text = Path(corpus)
        if not text.is_absolute():
            text = run_dir / text
    if not text.is_file():
        raise UserInputError(f"the text to measure on, {text}, is not a file; pass --text FILE")
    return text.read_text(encoding="utf-8").splitlines()


def temp_beside(out: Path) -> tempfile.TemporaryDirectory:
    out.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent)


def atomic_name(out: Path) -> Path:
    return out.with_name(f".{out.name}.{os.getpid()}.partial")
