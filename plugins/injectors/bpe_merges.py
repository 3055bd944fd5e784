"""The ``bpe-merges`` injector: every lexicon word enters the BPE model itself, as a vocabulary
entry plus the merges that build it from the pieces the base model cuts it into.

How it works. For each word the base tokenizer is asked how it encodes the word in the two
contexts that matter, after a space (``"a word"``) and at the start of a text (``"word"``); the
pieces found there, concatenated, are the word's *forms* in the model's own alphabet
(``▁word`` for SentencePiece-style models, ``Ġword`` and the byte-level alphabet for byte-level
ones, so "générations" becomes ``ĠgÃ©nÃ©rations`` and decodes back exactly). A Llama-style
tokenizer that prepends ``▁`` has one form per word; byte-level and Gemma-style tokenizers have
a word-initial form and a bare one (start of text; for byte-level also after punctuation or a
newline, where the pre-tokenizer starts a new pre-token).

Each form gets a new id and a left-to-right chain of merges over its base pieces, found by
simulating BPE after each merge (so "shinshin" = ``s hin s hin`` becomes ``(s, hin)`` then
``(shin, shin)``). The merges go at the end of the merge list, so they fire only once no base
merge applies: in ordinary text the base segmentation is reached first and stays unless it holds
the exact run of pieces a new merge joins. Forms are planned shortest first with the new merges
planned so far in the simulation; a later form's merges rank after an earlier one's and never
break it. Every form is then checked in context with the rebuilt tokenizer (one id, exact
decode).

A chain over n pieces needs n - 2 intermediate strings in the vocabulary; BPE cannot join
three pieces without one. Each intermediate (a *piece*) gets an id too, listed in the injection
with its surface text as the word and ``"piece"`` as the form, so ``apply_injection``
initialises (and trains) its rows: a piece that fires inside another word (``▁burgl`` ``ar``
joined on the way to a longer lexicon word fires on "burglar") never lands on an uninitialised
row, and a subword-mean initialiser gives it the mean of the pieces it joins. A left-to-right
chain keeps every intermediate of a word-initial form anchored at its ``▁``/``Ġ`` piece, so its
merges fire only in words that begin with the same pieces (a bare form's chain is not anchored
and can fire inside a longer pre-token), and words sharing a beginning share pieces. Choosing
the merge tree to reuse base vocabulary strings instead saved 3 pieces out of 27,544 and gives
unanchored merges. Measured with the 45K Wake lexicon on 32K vocabularies trained on wordfreq
English: 0.64 pieces per injected word (Llama-style, one form), 1.2 (byte-level, two forms);
on random English text 3.4% (Llama-style) and 6.3% (byte-level) of word occurrences changed
segmentation, nearly all through a piece that is itself an English word. New ids are
contiguous, after the base vocabulary and every added token.

What it can change in base text: a word that is not in the lexicon but contains the pieces of a
new chain in a row ("riverrunning" = ``▁river`` ``run`` ``ning`` with "riverrun" injected). The
injection report lists every such change on the verified text under ``segmentation_changes``.
Coverage is lower than whole-word's where the pre-tokenizer does not start a word at a lexicon
word (after punctuation with no space in a SentencePiece-style text, inside a hyphenated run):
the report's ``coverage`` says how much. Words whose characters the vocabulary lacks (byte
fallback pieces) or that the pre-tokenizer splits ("earwicker's" on byte-level) are skipped with
the reason.

The tokenizer is rebuilt from the edited JSON and, as for whole-word, saved and reloaded as the
generic ``PreTrainedTokenizerFast`` with the base's special tokens, so a saved run reloads it
exactly (``load_injected_tokenizer``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field
from wake2vec_plugins.injectors.bpe_changes import SAMPLE, segmentation_changes

from wake2vec import hookimpl
from wake2vec.api import Injection, Injector, Params
from wake2vec.errors import TrainingError, UserInputError

if TYPE_CHECKING:
    from collections.abc import Callable

    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerBase

WORD_INITIAL, BARE, PIECE = "word-initial", "bare", "piece"
_BYTE_PIECE = re.compile(r"<0x[0-9A-Fa-f]{2}>")
_LEFT = "a"  # the word before a lexicon word in the "after a space" context


@dataclass
class _Form:
    word: str
    form: str  # WORD_INITIAL or BARE
    text: str  # the form in the model's alphabet, e.g. "▁riverrun"
    pieces: list[str]  # the base model's pieces of it
    contexts: list[str] = field(default_factory=list)  # WORD_INITIAL / BARE: where it is one id


@dataclass
class BpeMergesInjection(Injection):
    """An Injection that also records each new id's form and the merges added."""

    forms: list[str] = field(default_factory=list)  # parallel to ids: word-initial | bare | piece
    merges: list[tuple[str, str]] = field(default_factory=list)  # appended to the merge list
    pipeline: dict[str, Any] = field(default_factory=dict)  # summary, shown in the report
    base_tokenizer: Any = None  # the tokenizer before injection (initialisers read pieces from it)

    def report_extra(
        self,
        base_tokenizer: PreTrainedTokenizerBase,
        tokenizer: PreTrainedTokenizerBase,
        text: str,
    ) -> dict[str, Any]:
        """Extra keys for ``verify_injection``'s report: ``segmentation_changes`` (every
        non-lexicon word the injection cuts differently, see ``segmentation_changes``) and
        ``bpe_pieces`` (merge intermediates: how many, how many the text produces, where)."""
        lexicon = {w for w, f in zip(self.words, self.forms, strict=True) if f != PIECE}
        changes = segmentation_changes(base_tokenizer, tokenizer, lexicon, text)
        pieces = {i for i, f in zip(self.ids, self.forms, strict=True) if f == PIECE}
        produced: dict[int, int] = {}
        lines = text.splitlines(keepends=True) or [""]
        for enc in tokenizer.backend_tokenizer.encode_batch(lines, add_special_tokens=False):
            for i in enc.ids:
                if i in pieces:
                    produced[i] = produced.get(i, 0) + 1
        return {
            "segmentation_changes": changes,
            "bpe_pieces": {
                "count": len(pieces),
                "produced": len(produced),
                "occurrences": sum(produced.values()),
                "sample": [
                    f"{tokenizer.convert_ids_to_tokens(i)!r} x{n}"
                    for i, n in sorted(produced.items(), key=lambda kv: -kv[1])[:SAMPLE]
                ],
            },
        }


class BpeMerges(Injector):
    """Adds each word to the BPE model's vocabulary with the merges that build it (alternative to whole-word)"""

    name: ClassVar[str] = "bpe-merges"
    ids_per_word: ClassVar[int] = 3  # forms plus pieces: measured 1.6-3.2 (memory planning)
    rows_per_word: ClassVar[int] = 2  # one row per word (its bare form reads it) plus pieces

    class Params(Params):
        min_length: int = Field(1, ge=1, description="words shorter than this are rejected")
        skip_single_token: bool = Field(
            True,
            description="skip words the base tokenizer already encodes as one token in running text",
        )

    def inject(self, tokenizer: PreTrainedTokenizerBase, words: list[str]) -> BpeMergesInjection:
        from wake2vec_plugins.injectors.whole_word import _wrap, screen_words

        backend = _bpe_backend(tokenizer)
        state = json.loads(backend.to_str())
        base_vocab: dict[str, int] = state["model"]["vocab"]
        added_ids = [int(t["id"]) for t in state.get("added_tokens", [])]
        first_id = max(
            [len(tokenizer), max(base_vocab.values(), default=-1) + 1, *(i + 1 for i in added_ids)]
        )

        candidates, rejected = screen_words(words, self.params.min_length)

        skipped: list[tuple[str, str]] = []
        forms, why_not = _base_forms(backend, candidates, base_vocab, self.params.skip_single_token)
        broken: dict[tuple[str, str], str] = {}
        for _ in range(4):  # the plan simulates BPE; the check in context is the last word
            kept = [f for f in forms if (f.word, f.form) not in broken]
            new_tok, table, merges, failed = _build(state, kept, first_id)
            broken.update(failed)
            kept = [f for f in kept if (f.word, f.form) not in failed]
            failures = _check(new_tok, kept, table)
            if not failures:
                break
            broken.update(failures)
        else:
            raise TrainingError(
                f"bpe-merges: {len(failures)} forms still do not encode as one id after four "
                f"rebuilds (first: {list(failures.values())[:3]}); this tokenizer is not supported"
            )
        injected = {f.word for f in kept}
        broken_reasons: dict[str, list[str]] = {}
        for (w, form), reason in broken.items():
            broken_reasons.setdefault(w, []).append(f"{form}: {reason}")
        for word in candidates:
            if word not in injected:
                reasons = why_not.get(word) or broken_reasons.get(word, [])
                skipped.append((word, "; ".join(reasons) or "no usable form"))

        wrapped = _wrap(tokenizer, new_tok)
        rows = sorted(table.items(), key=lambda kv: kv[1][0])  # text -> (id, word, form)
        pieces = sum(1 for _, (_, _, f) in rows if f == PIECE)
        # one trainable row per word: the bare form reads the word-initial form's
        initial = {w: i for _, (i, w, f) in rows if f == WORD_INITIAL}
        aliases = {i: initial[w] for _, (i, w, f) in rows if f == BARE and w in initial}
        return BpeMergesInjection(
            tokenizer=wrapped,
            words=[w for _, (_, w, _) in rows],
            ids=[i for _, (i, _, _) in rows],
            skipped=skipped,
            rejected=rejected,
            base_vocab_size=len(tokenizer),
            forms=[f for _, (_, _, f) in rows],
            merges=merges,
            pipeline={
                "injector": "bpe-merges",
                "model": "BPE",
                "first_new_id": first_id,
                "forms_added": len(rows) - pieces,
                "pieces_added": pieces,
                "merges_added": len(merges),
                "forms_dropped_for_merge_conflicts": len(broken),
                "dropped_sample": [
                    f"{w} ({form}): {why}" for (w, form), why in list(broken.items())[:SAMPLE]
                ],
            },
            base_tokenizer=tokenizer,
            aliases=aliases,
        )


# --------------------------------------------------------------------------- planning


def _bpe_backend(tokenizer: PreTrainedTokenizerBase) -> Tokenizer:
    from tokenizers import models

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not isinstance(backend.model, models.BPE):
        kind = type(backend.model).__name__ if backend is not None else type(tokenizer).__name__
        raise UserInputError(
            f"the bpe-merges injector needs a fast tokenizer with a BPE model; this one is {kind} "
            f"(use the whole-word injector)"
        )
    return backend


def _base_forms(
    backend: Tokenizer, words: list[str], vocab: dict[str, int], skip_single: bool
) -> tuple[list[_Form], dict[str, list[str]]]:
    """Each word's forms (after a space, at the start) as the base model cuts them."""
    after = backend.encode_batch([f"{_LEFT} {w}" for w in words], add_special_tokens=False)
    start = backend.encode_batch(list(words), add_special_tokens=False)
    forms: list[_Form] = []
    why_not: dict[str, list[str]] = {}
    split = _pre_token_count(backend)
    for word, enc_after, enc_start in zip(words, after, start, strict=True):
        after_space = zip(enc_after.tokens, enc_after.offsets, strict=True)
        spans = {
            WORD_INITIAL: [t for t, (s, _) in after_space if s >= len(_LEFT)],
            BARE: list(enc_start.tokens),
        }
        if skip_single and len(spans[WORD_INITIAL]) == 1:
            why_not[word] = [f"already one token in running text ({spans[WORD_INITIAL][0]!r})"]
            continue
        word_forms: dict[str, _Form] = {}
        reasons = []
        for form, pieces in spans.items():
            text = "".join(pieces)
            parts = split(f"{_LEFT} " if form == WORD_INITIAL else "", word)
            if parts > 1:
                reasons.append(f"{form}: the pre-tokenizer splits it into {parts} parts")
            elif any(_BYTE_PIECE.fullmatch(p) for p in pieces):
                reasons.append(f"{form}: characters outside the BPE vocabulary (byte fallback)")
            elif len(pieces) < 2:
                reasons.append(f"{form}: already one token ({text!r})")
            elif text in vocab:
                reasons.append(f"{form}: the vocabulary holds {text!r}, its merges never build it")
            elif text in word_forms:  # a Llama tokenizer's two contexts give one form
                word_forms[text].contexts.append(form)
            else:
                word_forms[text] = _Form(word, form, text, pieces, [form])
        forms.extend(word_forms.values())
        if not word_forms:
            why_not[word] = reasons
    return forms, why_not


def _pre_token_count(backend: Tokenizer) -> Callable[[str, str], int]:
    """A function giving the number of pre-tokens that ``word`` overlaps after ``prefix``
    (merges never cross pre-tokens, so a word split there can never become one id)."""
    normalizer, pre_tokenizer = backend.normalizer, backend.pre_tokenizer

    def count(prefix: str, word: str) -> int:
        if pre_tokenizer is None:
            return 1
        norm = normalizer.normalize_str if normalizer is not None else (lambda t: t)
        text, start = norm(prefix + word), len(norm(prefix))
        return sum(1 for _, (s, e) in pre_tokenizer.pre_tokenize_str(text) if e > start)

    return count


def _apply(pieces: list[str], rank: Callable[[tuple[str, str]], int | None]) -> list[str]:
    """BPE on ``pieces``: merge the adjacent pair of lowest rank (leftmost on ties) until none
    has a rank."""
    pieces = list(pieces)
    while len(pieces) > 1:
        pairs = enumerate(zip(pieces, pieces[1:], strict=False))
        ranked = [(r, i) for i, pair in pairs if (r := rank(pair)) is not None]
        if not ranked:
            break
        _, i = min(ranked)
        pieces[i : i + 2] = [pieces[i] + pieces[i + 1]]
    return pieces


def _first(a: int | None, b: int | None) -> int | None:
    return a if a is not None else b


def _simulated_chain(
    pieces: list[str], rank: Callable[[tuple[str, str]], int | None], next_rank: int
) -> list[tuple[str, str]]:
    """Left-to-right merges that join ``pieces``, simulating BPE after each one (a merge
    joins every occurrence of its pair, "shin"+"shin" after ("s", "hin")); it always ends in
    one string because each new pair is one BPE has no rank for yet."""
    merges: dict[tuple[str, str], int] = {}
    current = list(pieces)
    while len(current) > 1:
        merges[current[0], current[1]] = next_rank + len(merges)
        current = _apply(current, lambda pair: _first(rank(pair), merges.get(pair)))
    return list(merges)


def _plan(
    state: dict[str, Any], forms: list[_Form]
) -> tuple[list[_Form], list[str], list[tuple[str, str]], dict[tuple[str, str], str]]:
    """Plan the merges form by form, shortest first, simulating BPE with the base merges and
    the new merges planned so far (a later form's merges rank after an earlier one's, so they
    never break it). Returns the forms built, the new pieces, the new merges in rank order and
    the forms that could not be built with the reason."""
    vocab = state["model"]["vocab"]
    ranks: dict[tuple[str, str], int] = {}
    for r, m in enumerate(state["model"]["merges"]):
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        ranks.setdefault((a, b), r)
    new: dict[str, None] = {}  # strings added so far (forms and pieces)
    merges: list[tuple[str, str]] = []
    built: list[_Form] = []
    failed: dict[tuple[str, str], str] = {}
    for f in sorted(forms, key=lambda f: len(f.pieces)):
        current = _apply(f.pieces, ranks.get)  # earlier new merges may already join some pieces
        chain = _simulated_chain(current, ranks.get, len(ranks))
        trial = {pair: len(ranks) + n for n, pair in enumerate(chain)}
        got = _apply(current, lambda pair, t=trial: _first(ranks.get(pair), t.get(pair)))
        if got != [f.text]:  # not expected: the chain is built by this very simulation
            failed[f.word, f.form] = f"earlier merges pre-empt its chain (got {got})"
            continue
        ranks.update(trial)
        merges.extend(chain)
        for left, right in chain:
            new.setdefault(left + right)
        built.append(f)
    forms_text = {f.text for f in built}
    pieces = [x for x in new if x not in forms_text and x not in vocab]
    return built, pieces, merges, failed


def _build(
    state: dict[str, Any], forms: list[_Form], first_id: int
) -> tuple[Tokenizer, dict[str, tuple[int, str, str]], list[tuple[str, str]], dict]:
    """The base tokenizer JSON with ``forms``, their pieces and merges added to the BPE model;
    forms get the first new ids in lexicon order, pieces the ids after them."""
    from tokenizers import Tokenizer

    built, pieces, merges, failed = _plan(state, forms)
    order = {id(f): n for n, f in enumerate(forms)}
    table: dict[str, tuple[int, str, str]] = {}  # new string -> (id, word, form)
    for f in sorted(built, key=lambda f: order[id(f)]):
        table[f.text] = (first_id + len(table), f.word, f.form)
    decoder = Tokenizer.from_str(json.dumps(state)).decoder if pieces else None
    for piece in pieces:  # a piece's "word" is its surface text (what initialisers see)
        surface = decoder.decode([piece]).strip() if decoder is not None else piece
        table[piece] = (first_id + len(table), surface or piece, PIECE)
    edited = json.loads(json.dumps(state))  # a deep copy
    model = edited["model"]
    # tokenizers numbers added tokens the model lacks from the model's vocabulary size on
    # loading; entered in the vocabulary under their own ids they keep them
    for added in edited.get("added_tokens", []):
        model["vocab"].setdefault(added["content"], int(added["id"]))
    model["vocab"].update({text: row[0] for text, row in table.items()})
    base_merges = model["merges"]
    as_strings = bool(base_merges) and isinstance(base_merges[0], str)
    model["merges"] = base_merges + [f"{a} {b}" if as_strings else [a, b] for a, b in merges]
    tok = Tokenizer.from_str(json.dumps(edited, ensure_ascii=False))
    moved = [
        t["content"]
        for t in state.get("added_tokens", [])
        if tok.token_to_id(t["content"]) != t["id"]
    ]
    if moved:
        raise TrainingError(f"bpe-merges: rebuilding the tokenizer renumbered added tokens {moved}")
    return tok, table, merges, failed


def _check(
    tok: Tokenizer, forms: list[_Form], table: dict[str, tuple[int, str, str]]
) -> dict[tuple[str, str], str]:
    """Forms that do not encode to their one id (and decode exactly) in each context that
    selects them: after a space and at the start of a text."""
    cases = [(f, c) for f in forms for c in f.contexts]
    texts = [f"{_LEFT} {f.word}" if c == WORD_INITIAL else f.word for f, c in cases]
    encodings = tok.encode_batch(texts, add_special_tokens=False)
    decoded = tok.decode_batch([e.ids for e in encodings])
    failures = {}
    for (f, context), text, enc, back in zip(cases, texts, encodings, decoded, strict=True):
        offset = len(_LEFT) if context == WORD_INITIAL else 0
        word_ids = [i for i, (s, _) in zip(enc.ids, enc.offsets, strict=True) if s >= offset]
        if word_ids != [table[f.text][0]] or back != text:
            failures[f.word, f.form] = (
                f"the new merges do not build {f.text!r} in {text!r} (got {enc.tokens})"
            )
    return failures


# --------------------------------------------------------------------------- report


@hookimpl
def wake2vec_register_injectors() -> list[type]:
    return [BpeMerges]
