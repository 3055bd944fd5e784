"""The ``whole-word`` injector: every lexicon word becomes one new id wherever it stands as a
whole word, and nowhere else.

How it works (measured with tokenizers 0.23 / transformers 5). Added tokens are matched before
pre-tokenisation, leftmost-longest, and ``single_word`` rejects a match when the character
before or after it is a word character (regex ``\\w``). Each word gets two added tokens:

* a *space form* ``" word"`` that absorbs the single space in front of the word, so no space is
  left over as a token of its own and decoding restores it;
* a *bare form* ``"word"`` for a word at the start of the text, after a newline or tab, after
  punctuation or a quote.

Both are ``single_word`` and ``normalized``. Two facts of the library would still break that,
and a marker character fixes both: U+FDD0, a Unicode noncharacter that never occurs in real
text. The injected tokenizer's normalizer (run before added tokens are matched) inserts it

* between any non-space character and a following space, so the space form's left-hand
  ``single_word`` check sees the marker instead of the previous word's last letter (without it
  ``" word"`` would never match after a word);
* for byte-level tokenizers also after every letter or digit that ends a word, so the bare
  form's matched text carries the marker. The byte-level decoder passes a token with a
  character outside its byte alphabet through as UTF-8; without the marker "générations"
  decodes as "g\\ufffdn\\ufffdrations".

("Space" is the normalised space: Gemma's normalizer turns it into ``▁`` first.) The
pre-tokenizer removes the markers again before the base model sees the text (it splits there,
which is where the base pre-tokenizers split anyway; SentencePiece-style vocabularies have no
pieces across a space), and the decoder strips them, so text without lexicon words encodes
exactly as before; each injection checks that on a probe paragraph and checks every form in a
context that selects it. Contents end in the marker too, so a form never collides with a base
vocabulary string ("hore" in a byte-level vocabulary).

Limits, all visible in the injection report: a longest match that is not a whole word hides a
shorter one that is ("earwicker'sx" hides "earwicker"); a tab or a second space before a word
stays a token of its own, as in the base tokenizer; U+FDD0 in the input text is dropped; a
Llama tokenizer drops a text's leading space on decode, as the base one does.

Transformers 5 rebuilds the normaliser, pre-tokenizer and decoder of Llama, GPT-2 and other
named tokenizer classes from its own defaults when it loads them, which would silently drop
this pipeline; the injected tokenizer is therefore the generic ``PreTrainedTokenizerFast``
(with the base tokenizer's settings), which saves and loads ``tokenizer.json`` as written.
Reload a saved one with ``load_injected_tokenizer`` or ``AutoTokenizer``; beside a model whose
type transformers maps to its own class (qwen2, phi3), ``wake2vec.vocab.tokenizer_files`` adds the
entry that keeps ``AutoTokenizer`` on the generic class.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from wake2vec import hookimpl
from wake2vec.api import Injection, Injector, Params
from wake2vec.errors import TrainingError, UserInputError
from wake2vec.vocab.lexicon import entry_problem

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerBase

MARKER = "\ufdd0"
SPACE_FORM, BARE_FORM = "space", "bare"
_LEAD = "a"  # the word before a lexicon word when asking how the base encodes it in running text

# Ordinary English the injected tokenizer must encode exactly as the base one (checked each time).
_BASE_PROBE = (
    "The river ran past the church, and the shore -- two spaces  here -- came back.\n"
    "\"Quoted,\" she said; (parenthesised) words: don't, isn't, o'clock, x_y_z, 3.14 and 1,000!\n"
    "\tTabbed line with trailing space \nNaïve café, señor, déjà vu.  End"
)


def screen_words(words: list[str], min_length: int) -> tuple[list[str], list[tuple[str, str]]]:
    """Split lexicon entries into usable candidates (in order, once each) and rejected
    ``(entry, reason)`` pairs: empty, malformed (see ``entry_problem``), too short, duplicate."""
    rejected: list[tuple[str, str]] = []
    candidates: list[str] = []
    seen: set[str] = set()
    for word in words:
        problem = entry_problem(word) if word else "empty"
        if problem is None and len(word) < min_length:
            problem = f"shorter than min_length {min_length}"
        if problem is None and word in seen:
            problem = "duplicate"
        if problem is not None:
            rejected.append((word, problem))
            continue
        seen.add(word)
        candidates.append(word)
    return candidates, rejected


@dataclass
class WholeWordInjection(Injection):
    """An Injection that also records which form each new id is (parallel to ``ids``)."""

    forms: list[str] = field(default_factory=list)  # "space" (absorbs one space) | "bare"
    pipeline: dict[str, Any] = field(default_factory=dict)  # what was changed in the tokenizer
    base_tokenizer: Any = None  # the tokenizer before injection (initialisers read pieces from it)


class WholeWord(Injector):
    """Each lexicon word becomes one new id as a whole word (start, after space, newline or punctuation)."""

    name: ClassVar[str] = "whole-word"
    ids_per_word: ClassVar[int] = 2  # a space-absorbing form and a bare form (memory planning)
    rows_per_word: ClassVar[int] = 1  # the bare form reads the space form's row

    class Params(Params):
        min_length: int = Field(1, ge=1, description="words shorter than this are rejected")
        skip_single_token: bool = Field(
            True,
            description="skip words the base tokenizer already encodes as one token in running text",
        )

    def inject(self, tokenizer: PreTrainedTokenizerBase, words: list[str]) -> WholeWordInjection:
        from tokenizers import AddedToken

        backend = _backend(tokenizer)
        base_size = len(tokenizer)
        candidates, rejected = screen_words(words, self.params.min_length)

        skipped: list[tuple[str, str]] = []
        if self.params.skip_single_token and candidates:
            # the word after another word: what follows that word's own pieces (a legacy
            # SentencePiece file would give a text that begins with a space an extra "▁")
            lead = backend.encode(_LEAD, add_special_tokens=False).ids
            encodings = backend.encode_batch(
                [f"{_LEAD} {w}" for w in candidates], add_special_tokens=False
            )
            kept = []
            for word, enc in zip(candidates, encodings, strict=True):
                rest = enc.ids[len(lead):] if enc.ids[: len(lead)] == lead else enc.ids
                if len(rest) == 1:
                    token = enc.tokens[len(lead)]
                    skipped.append(
                        (word, f"already one token in running text (id {rest[0]} {token!r})")
                    )
                else:
                    kept.append(word)
            candidates = kept

        # the generic wrapper copies the base backend once; the pipeline and the new words
        # then go into that copy (adding them before wrapping would copy them as well)
        wrapped = _wrap(tokenizer, backend)
        new = wrapped.backend_tokenizer
        pipeline = install_marker_pipeline(new)
        _check_pipeline(backend, new)
        contents: list[tuple[str, str, str]] = []  # (word, form, content)
        for word in candidates:
            forms = ((SPACE_FORM, " " + word + MARKER), (BARE_FORM, word + MARKER))
            if any(new.token_to_id(content) is not None for _, content in forms):
                skipped.append((word, "already injected in this tokenizer"))
                continue
            contents.extend((word, form, content) for form, content in forms)
        new.add_tokens(
            [
                AddedToken(c, single_word=True, normalized=True, special=False)
                for _, _, c in contents
            ]
        )
        rows = sorted((new.token_to_id(c), w, f) for w, f, c in contents)
        _check_forms(new, rows)
        id_of = {(w, f): i for i, w, f in rows}
        # one trainable row per word: the bare form reads the space form's
        aliases = {id_of[(w, BARE_FORM)]: id_of[(w, SPACE_FORM)]
                   for i, w, f in rows if f == BARE_FORM and (w, SPACE_FORM) in id_of}

        return WholeWordInjection(
            tokenizer=wrapped,
            words=[w for _, w, _ in rows],
            ids=[i for i, _, _ in rows],
            skipped=skipped,
            rejected=rejected,
            base_vocab_size=base_size,
            forms=[f for _, _, f in rows],
            pipeline=pipeline,
            base_tokenizer=tokenizer,
            aliases=aliases,
        )


def _backend(tokenizer: PreTrainedTokenizerBase) -> Tokenizer:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise UserInputError(
            f"the whole-word injector needs a fast (tokenizers-backed) tokenizer; "
            f"{type(tokenizer).__name__} has no backend_tokenizer"
        )
    return backend


def install_marker_pipeline(tok: Tokenizer) -> dict[str, Any]:
    """Add the marker steps to ``tok``'s normalizer, pre-tokenizer and decoder (once)."""
    from tokenizers import Regex, decoders, normalizers, pre_tokenizers

    state = _pipeline_state(tok)
    if MARKER in json.dumps(state.get("normalizer"), ensure_ascii=False):
        return {"marker": "U+FDD0", "already_installed": True}
    prefix = _prefix_first(tok, state)
    state = _pipeline_state(tok)
    space = tok.normalizer.normalize_str(" ") if tok.normalizer is not None else " "
    if len(space) != 1:
        raise UserInputError(
            f"the whole-word injector cannot handle this tokenizer: its normalizer turns a space into "
            f"{space!r} (expected one character)"
        )
    byte_level = '"ByteLevel"' in json.dumps(state.get("decoder"))
    s = re.escape(space)
    pattern = rf"(?<=[^\s{s}])(?={s})"
    if byte_level:
        pattern += r"|(?<=[\p{L}\p{N}])(?!\w)"
    steps = [tok.normalizer] if tok.normalizer is not None else []
    steps += [normalizers.Replace(MARKER, ""), normalizers.Replace(Regex(pattern), MARKER)]
    tok.normalizer = normalizers.Sequence(steps)
    split = pre_tokenizers.Split(MARKER, "removed")
    tok.pre_tokenizer = (
        split if tok.pre_tokenizer is None else pre_tokenizers.Sequence([split, tok.pre_tokenizer])
    )
    strip = decoders.Replace(MARKER, "")
    tok.decoder = strip if tok.decoder is None else decoders.Sequence([tok.decoder, strip])
    found = {"marker": "U+FDD0", "space": space, "byte_level": byte_level, "pattern": pattern}
    return {**found, "sentencepiece_prefix": prefix} if prefix else found


def _pipeline_state(tok: Tokenizer) -> dict[str, Any]:
    """The JSON of ``tok``'s normalizer, pre-tokenizer and decoder (None where it has none),
    read part by part: serialising the whole tokenizer would copy its vocabulary too."""
    parts = {"normalizer": tok.normalizer, "pre_tokenizer": tok.pre_tokenizer,
             "decoder": tok.decoder}
    return {k: None if v is None else json.loads(v.__getstate__()) for k, v in parts.items()}


def _prefix_first(tok: Tokenizer, state: dict[str, Any]) -> str | None:
    """Make a SentencePiece-style tokenizer put its ``▁`` before the first piece of a text only.

    Transformers 5 builds Llama-family tokenizers (TinyLlama, Mistral, Phi-3) with a Metaspace
    pre-tokenizer that prepends ``▁`` to every section the added tokens leave ("always"), so
    "riverrun." would become ``riverrun`` ``▁.``; the hub's legacy files do the same with a
    ``Prepend("▁")`` normalizer, which would also be applied to every added token's content.
    Both become ``Metaspace(prepend_scheme="first", split=False)``: the same pieces for any text
    without special tokens in it (one section, prefixed once). Returns what was changed."""
    from tokenizers import normalizers, pre_tokenizers

    pre = state.get("pre_tokenizer") or {}
    if pre.get("type") == "Metaspace" and pre.get("prepend_scheme") == "always":
        tok.pre_tokenizer = pre_tokenizers.Metaspace(
            replacement=pre["replacement"], prepend_scheme="first", split=bool(pre.get("split")))
        return "Metaspace prepend_scheme always -> first"
    norm = state.get("normalizer") or {}
    steps = norm.get("normalizers", [norm]) if norm.get("type") == "Sequence" else [norm]
    prepend = [n for n in steps if n.get("type") == "Prepend"]
    if not prepend or state.get("pre_tokenizer") is not None:
        return None
    mark = prepend[0]["prepend"]
    legacy = [n for n in steps if n.get("type") == "Prepend"
              or (n.get("type") == "Replace" and n.get("pattern") == {"String": " "}
                  and n.get("content") == mark)]
    if len(legacy) != 2 or len(mark) != 1:
        return None  # not the legacy layout: leave it to the pipeline check
    rest = [n for n in steps if n not in legacy]
    tok.normalizer = (normalizers.Sequence([_normalizer(n) for n in rest]) if rest else None)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=mark, prepend_scheme="first",
                                                 split=False)
    return "normalizer Prepend + Replace -> Metaspace prepend_scheme first"


def _normalizer(spec: dict[str, Any]) -> Any:
    """A tokenizers normalizer from its JSON form."""
    from tokenizers import Tokenizer

    holder = Tokenizer.from_str(json.dumps({
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
        "normalizer": spec, "pre_tokenizer": None, "post_processor": None, "decoder": None,
        "model": {"type": "WordLevel", "vocab": {"<unk>": 0}, "unk_token": "<unk>"}}))
    return holder.normalizer


def _check_pipeline(base: Tokenizer, new: Tokenizer) -> None:
    """With the marker steps installed (and no word added yet) ordinary text must encode and
    decode exactly as with the base tokenizer."""
    lines = _BASE_PROBE.splitlines(keepends=True) + [_BASE_PROBE]
    before = base.encode_batch(lines, add_special_tokens=False)
    after = new.encode_batch(lines, add_special_tokens=False)
    if [e.ids for e in before] != [e.ids for e in after] or base.decode_batch(
        [e.ids for e in before]
    ) != new.decode_batch([e.ids for e in after]):
        raise TrainingError(
            "whole-word injection would change how this tokenizer encodes ordinary text; its "
            "normalizer/pre-tokenizer combination is not supported"
        )


def _check_forms(new: Tokenizer, rows: list[tuple[int, str, str]], group: int = 50) -> None:
    """Every form must encode to its own id in a context that selects it, and decode exactly.

    Forms are checked ``group`` lines at a time, a line per word with its bare form at the
    line's start and its space form after "a" (one encoding per group is far cheaper than one
    per form); a group that does not come out as expected is checked form by form, and the
    forms that fail there are the error."""
    if not rows:
        return
    ids: dict[str, dict[str, int]] = {}
    for new_id, word, form in rows:
        ids.setdefault(word, {})[form] = new_id
    words = list(ids)
    groups = [words[i : i + group] for i in range(0, len(words), group)]
    texts = ["\n".join(f"{w}. a {w}." for w in part) for part in groups]
    encodings = new.encode_batch(texts, add_special_tokens=False)
    decoded = new.decode_batch([enc.ids for enc in encodings])
    new_ids = {i for i, _, _ in rows}
    suspect: list[tuple[int, str, str]] = []
    for part, text, enc, back in zip(groups, texts, encodings, decoded, strict=True):
        wanted = [ids[w][f] for w in part for f in (BARE_FORM, SPACE_FORM) if f in ids[w]]
        if back != text or [i for i in enc.ids if i in new_ids] != wanted:
            suspect += [(ids[w][f], w, f) for w in part for f in ids[w]]
    if not suspect:
        return
    texts = [(w if f == BARE_FORM else "a " + w) + "." for _, w, f in suspect]
    encodings = new.encode_batch(texts, add_special_tokens=False)
    decoded = new.decode_batch([enc.ids for enc in encodings])
    failures = [
        word
        for (new_id, word, _), text, enc, back in zip(suspect, texts, encodings, decoded, strict=True)
        if enc.ids.count(new_id) != 1 or back != text
    ]
    if failures:
        raise TrainingError(
            f"whole-word injection: {len(failures)} forms do not encode as one token or do not "
            f"decode back (first: {failures[:5]}); this tokenizer's pipeline is not supported"
        )


# tokenizer_config keys that name files or a class of the base tokenizer, not settings
_NOT_SETTINGS = ("tokenizer_class", "added_tokens_decoder", "vocab_file", "merges_file",
                 "tokenizer_file", "name_or_path", "auto_map")


def _wrap(base: PreTrainedTokenizerBase, backend: Tokenizer) -> PreTrainedTokenizerBase:
    """``backend`` as the generic ``PreTrainedTokenizerFast`` with the base tokenizer's
    settings (special tokens, chat template, lengths: its tokenizer_config.json less the keys
    that name files or its class), built in memory: saved and reloaded it is the same."""
    from transformers import PreTrainedTokenizerFast

    settings = {k: v for k, v in base.init_kwargs.items() if k not in _NOT_SETTINGS}
    # and what was set on the tokenizer after it loaded (a family gives it a pad token)
    settings.update(base.special_tokens_map)
    for name in ("padding_side", "truncation_side", "model_max_length", "chat_template"):
        if getattr(base, name, None) is not None:
            settings[name] = getattr(base, name)
    return PreTrainedTokenizerFast(tokenizer_object=backend, **settings)


def load_injected_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """Reload a tokenizer saved after injection exactly as it was saved.

    ``AutoTokenizer`` does the same for a directory holding only the tokenizer, but when a
    ``config.json`` sits beside it transformers may force the model type's own class (it does
    for ``qwen2``), which rebuilds the pipeline and drops the whole-word steps."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(str(path))


@hookimpl
def wake2vec_register_injectors() -> list[type]:
    return [WholeWord]
