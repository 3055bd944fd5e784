"""Apply an injection to a model (resize, initialise new input and output rows) and verify an
injected tokenizer on a text (coverage, spurious hits, dead words, round trip)."""

from __future__ import annotations

import bisect
import difflib
import re
import time
from typing import TYPE_CHECKING, Any

from wake2vec.errors import TrainingError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from wake2vec.api import Initializer, Injection
    from wake2vec.morphology import Morphology

SAMPLE = 20  # examples kept in each list of the report
VERIFY_LINES = 8192  # lines encoded at a time by verify_injection (bounds its memory)


# --------------------------------------------------------------------------- model


def _same_storage(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    return a is not None and b is not None and a.data_ptr() == b.data_ptr()


def _is_tied(model: PreTrainedModel) -> bool:
    out = model.get_output_embeddings()
    return out is not None and _same_storage(out.weight, model.get_input_embeddings().weight)


def _initialise(
    initializer: Initializer, weight: torch.Tensor, ctx: Any, what: str
) -> torch.Tensor:
    import torch

    rows = initializer.initialize(weight.detach().float().cpu(), ctx)  # on CPU: one device
    expected = (len(ctx.ids), weight.shape[1])
    if tuple(rows.shape) != expected:
        raise TrainingError(
            f"initializer {initializer.name!r} returned {tuple(rows.shape)} rows for the {what} matrix, "
            f"expected {expected}"
        )
    if not torch.isfinite(rows).all():
        raise TrainingError(
            f"initializer {initializer.name!r} produced non-finite values for the {what} matrix"
        )
    return rows


def apply_injection(
    model: PreTrainedModel,
    injection: Injection,
    initializer: Initializer,
    *,
    base_ids: list[int],
    morphology: Morphology | None,
    seed: int,
    tied: bool,
    base_tokenizer: PreTrainedTokenizerBase | None = None,
) -> dict[str, Any]:
    """Make room for ``injection.ids`` in ``model`` and fill their rows.

    The matrix grows to ``len(injection.tokenizer)`` rows when it is smaller (existing padding
    rows beyond the old tokenizer are reused, and initialised, when it is not). New input rows
    come from ``initializer`` over the base rows ``base_ids``; when the model is untied its new
    output rows come from the same initialiser over the base output rows. Every base row of both
    matrices stays bit-identical and the tie setting never changes. The initialiser fills one
    row per word (``injection.row_ids()``); an alias id (a bare spelling) gets its owner's row
    plus ``form_shift`` of that matrix, recorded in ``injection.alias_shift``.
    ``base_tokenizer`` defaults to ``injection.base_tokenizer`` when the injector recorded one."""
    import torch

    from wake2vec.api import InitContext

    started = time.perf_counter()
    ids = [int(i) for i in injection.ids]
    if not ids:
        return {
            "rows_before": model.get_input_embeddings().weight.shape[0],
            "new_ids": 0,
            "tied": tied,
            "note": "nothing to inject",
        }
    base_tokenizer = (
        base_tokenizer if base_tokenizer is not None else getattr(injection, "base_tokenizer", None)
    )
    was_tied = _is_tied(model)
    if was_tied != bool(tied):
        raise TrainingError(
            f"the model's embeddings are {'tied' if was_tied else 'untied'} but the run expects "
            f"{'tied' if tied else 'untied'}; refusing to change the tie setting"
        )
    rows_before = int(model.get_input_embeddings().weight.shape[0])
    head_rows_before = (
        None
        if model.get_output_embeddings() is None
        else int(model.get_output_embeddings().weight.shape[0])
    )
    target = max(rows_before, len(injection.tokenizer), max(ids) + 1)
    if target > rows_before:
        model.resize_token_embeddings(target, mean_resizing=False)
    if _is_tied(model) != was_tied:
        raise TrainingError(
            "resizing the embeddings changed the tie setting; this model is not supported"
        )
    embed = model.get_input_embeddings().weight
    if max(base_ids, default=-1) >= rows_before:
        raise TrainingError(
            f"base ids reach {max(base_ids)} but the matrix had only {rows_before} rows"
        )
    if min(ids) < len(base_ids) and set(ids) & set(base_ids):
        raise TrainingError(
            "some injected ids are base ids; the injection and base vocabulary overlap"
        )

    # one row per word: the initialiser fills the rows' owners, an alias gets its owner's row
    owners = injection.row_ids()
    aliases = {int(a): int(o) for a, o in injection.aliases.items()}
    ctx = InitContext(
        words=injection.row_words(),
        ids=owners,
        base_tokenizer=base_tokenizer,
        base_ids=list(base_ids),
        morphology=morphology,
        generator=torch.Generator().manual_seed(int(seed)),
    )
    slot_of = {i: n for n, i in enumerate(owners)}
    every = sorted(set(ids))
    index = torch.tensor(every, dtype=torch.long)
    expand = torch.tensor([slot_of[aliases.get(i, i)] for i in every], dtype=torch.long)
    is_alias = torch.tensor([i in aliases for i in every]).unsqueeze(1)
    head = model.get_output_embeddings()
    pairs: list[tuple[int, int]] = []
    if aliases and base_tokenizer is not None:
        pairs = form_pairs(base_tokenizer.get_vocab(), len(base_ids))
        injection.alias_shift["input"] = form_shift(embed, pairs)
        if not was_tied and head is not None:
            injection.alias_shift["output"] = form_shift(head.weight, pairs)

    def fill(rows: torch.Tensor, shift: torch.Tensor | None) -> torch.Tensor:
        rows = rows[expand]
        return rows if shift is None else rows + is_alias * shift

    with torch.no_grad():
        rows = fill(_initialise(initializer, embed, ctx, "input"), injection.alias_shift.get("input"))
        embed.index_copy_(
            0, index.to(embed.device), rows.to(device=embed.device, dtype=embed.dtype)
        )
        head_done = False
        if not was_tied and head is not None:
            ctx.generator = torch.Generator().manual_seed(int(seed) + 1)
            head_weight = head.weight
            head_rows = fill(_initialise(initializer, head_weight, ctx, "output"),
                             injection.alias_shift.get("output"))
            head_weight.index_copy_(
                0,
                index.to(head_weight.device),
                head_rows.to(device=head_weight.device, dtype=head_weight.dtype),
            )
            bias = getattr(head, "bias", None)
            if bias is not None:
                base_bias = bias[torch.tensor(list(base_ids), dtype=torch.long, device=bias.device)]
                bias[index.to(bias.device)] = base_bias.float().mean().to(bias.dtype)
            head_done = True

    on_device = torch.tensor(list(base_ids), dtype=torch.long, device=embed.device)
    base_norm = embed.detach()[on_device].float().norm(dim=1)
    new_norm = embed.detach()[index.to(embed.device)].float().norm(dim=1)
    return {
        "rows_before": rows_before,
        "rows_after": int(embed.shape[0]),
        "head_rows_before": head_rows_before,
        "tokenizer_entries_before": int(getattr(injection, "base_vocab_size", 0) or len(base_ids)),
        "tokenizer_entries_after": len(injection.tokenizer),
        "new_ids": len(set(ids)),
        "trainable_rows": len(owners),
        "alias_shift": {
            "aliases": len(aliases), "base_pairs": len(pairs),
            **{f"{k}_norm": float(v.norm()) for k, v in injection.alias_shift.items() if v is not None},
        },
        "new_rows_on_former_padding": sum(1 for i in set(ids) if i < rows_before),
        "tied": was_tied,
        "output_rows_initialised": head_done,
        "initializer": getattr(initializer, "name", type(initializer).__name__),
        "base_row_norm_mean": float(base_norm.mean()),
        "new_row_norm_mean": float(new_norm.mean()),
        "seconds": round(time.perf_counter() - started, 3),
    }


FORM_MARKS = ("\u0120", "\u2581")  # word-initial marks: byte-level "Ġ", SentencePiece "▁"
MIN_FORM_PAIRS = 50


def form_pairs(vocab: dict[str, int], n_base: int) -> list[tuple[int, int]]:
    """``(word-initial id, bare id)`` of every base vocabulary word present both with the
    word-initial mark and without it ("Ġriver" / "river", "▁river" / "river"; alphabetic, three
    letters or more), for the mark that gives the most pairs."""
    best: list[tuple[int, int]] = []
    for mark in FORM_MARKS:
        found = [(i, vocab[t[1:]]) for t, i in vocab.items()
                 if t.startswith(mark) and len(t) > 3 and t[1:].isalpha()
                 and i < n_base and vocab.get(t[1:], n_base) < n_base]
        if len(found) > len(best):
            best = found
    return best


def form_shift(weight: torch.Tensor, pairs: list[tuple[int, int]]) -> torch.Tensor | None:
    """The mean bare-minus-word-initial row of ``pairs`` in ``weight`` (fp32, CPU), or None
    with fewer than ``MIN_FORM_PAIRS`` pairs.

    A new word's bare id reads its word-initial id's row plus this vector. The pair rows of a
    pretrained head differ mostly along it: measured on SmolLM2-135M (7,220 pairs), the sign
    of the hidden state's product with it picks the right spelling at 98.5% of positions whose
    next token is one of a pair, 99.7% after punctuation or a newline, where a new word's bare
    spelling can follow; after a letter, where only the word-initial spelling can, it favours
    that spelling by 4.8 nats on average. With one shared row and no shift both spellings get
    the same logit, and half of a new word's probability would glue it to the word before."""
    import torch

    if len(pairs) < MIN_FORM_PAIRS:
        return None
    initial = torch.tensor([a for a, _ in pairs], device=weight.device)
    bare = torch.tensor([b for _, b in pairs], device=weight.device)
    return (weight.detach()[bare].float() - weight.detach()[initial].float()).mean(0).cpu()


# --------------------------------------------------------------------------- verification

_WORD_CHAR = re.compile(r"\w")
_ALL_WORD = re.compile(r"\w+")
_RUN = re.compile(r"\S+")
_STARTS = re.compile(r"(?<!\w)(?=.)", re.S)  # positions a whole word may start at
_ENDS = re.compile(r"(?<=.)(?!\w)", re.S)  # positions a whole word may end at


def joiners(lexicon: set[str]) -> re.Pattern[str] | None:
    """A pattern matching the non-word characters that occur inside lexicon entries (the
    apostrophe of "earwicker's", the hyphen of "phiz-à-phiz"), or None when none do: a run of
    text without them can only hold lexicon words made of word characters alone."""
    found = {c for word in lexicon for c in word if not _WORD_CHAR.match(c)}
    return re.compile("[" + "".join(re.escape(c) for c in sorted(found)) + "]") if found else None


def whole_word_occurrences(
    line: str, lexicon: set[str], max_len: int, joined: re.Pattern[str] | None | bool = True
) -> list[tuple[int, int, str]]:
    """Lexicon words standing as whole words in ``line`` (no word character on either side),
    leftmost-longest and non-overlapping: ``(start, end, word)``.

    ``joined`` is ``joiners(lexicon)``, computed once by a caller that scans many lines; a
    run of text without those characters is then read as its maximal word-character pieces,
    each a whole word (the default, True, scans every run character by character)."""
    found = []
    for run in _RUN.finditer(line):
        text, offset = run.group(), run.start()
        if _ALL_WORD.fullmatch(text):
            if text in lexicon:
                found.append((offset, offset + len(text), text))
            continue
        if joined is not True and (joined is None or not joined.search(text)):
            for piece in _ALL_WORD.finditer(text):
                if piece.group() in lexicon:
                    found.append((offset + piece.start(), offset + piece.end(), piece.group()))
            continue
        starts = [m.start() for m in _STARTS.finditer(text)]  # no word character before
        ends = [m.start() for m in _ENDS.finditer(text)]  # no word character after
        position = 0
        for s in starts:
            if s < position:
                continue
            # longest first, among ends no further than the longest lexicon word
            for k in range(bisect.bisect_right(ends, s + max_len) - 1, -1, -1):
                e = ends[k]
                if e <= s:
                    break
                if text[s:e] in lexicon:
                    found.append((offset + s, offset + e, text[s:e]))
                    position = e
                    break
    return found


def _backend(tokenizer: PreTrainedTokenizerBase) -> Any:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise TrainingError(
            f"verification needs a fast tokenizer; {type(tokenizer).__name__} is not one"
        )
    return backend


def _differing_chars(a: str, b: str) -> int:
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    same = sum(block.size for block in matcher.get_matching_blocks())
    return max(len(a), len(b)) - same


def verify_injection(
    base_tokenizer: PreTrainedTokenizerBase,
    tokenizer: PreTrainedTokenizerBase,
    injection: Injection,
    text: str,
) -> dict[str, Any]:
    """The injection report for ``text``: words added (with their ids and trainable rows),
    skipped and rejected; coverage (share of whole-word lexicon occurrences that encode to
    exactly one new id of that word); spurious hits (new ids where the text is not that whole
    word); dead words (none of the word's ids occurs) and ids never produced; round trip;
    token counts before and after. Lines are encoded a batch at a time by both tokenizers.
    An injection with a ``report_extra(base_tokenizer, tokenizer, text)`` method adds the keys
    it returns (bpe-merges: ``segmentation_changes``, ``bpe_pieces``)."""
    started = time.perf_counter()
    base_backend, backend = _backend(base_tokenizer), _backend(tokenizer)
    word_of: dict[int, str] = {}
    kinds = getattr(injection, "forms", None) or [None] * len(injection.ids)
    for word, new_id, kind in zip(injection.words, injection.ids, kinds, strict=True):
        if kind != "piece":  # bpe-merges' merge intermediates are no lexicon words (see its keys)
            word_of[int(new_id)] = word
    lexicon = set(word_of.values())
    max_len = max((len(w) for w in lexicon), default=0)
    joined = joiners(lexicon)
    forms: dict[str, int] = {}
    for form in getattr(injection, "forms", []) or []:
        forms[form] = forms.get(form, 0) + 1

    lines = text.splitlines(keepends=True) or [""]
    lowest = min(word_of, default=0)
    produced: set[int] = set()
    total = covered = 0
    uncovered: list[str] = []
    spurious: list[str] = []
    spurious_count = 0
    agree_checked = agree_differ = 0
    tokens_before = tokens_after = 0
    differing: list[tuple[str, str]] = []
    base_differing: list[tuple[str, str]] = []
    for start in range(0, len(lines), VERIFY_LINES):  # bounded: the encodings of a batch
        part = lines[start : start + VERIFY_LINES]
        after = backend.encode_batch(part, add_special_tokens=False)
        after_ids = [enc.ids for enc in after]
        before_ids = [enc.ids for enc in base_backend.encode_batch(part, add_special_tokens=False)]
        tokens_after += sum(map(len, after_ids))
        tokens_before += sum(map(len, before_ids))
        decoded = backend.decode_batch(after_ids, skip_special_tokens=False)
        differing += [(line, d) for line, d in zip(part, decoded, strict=True) if line != d]
        decoded = base_backend.decode_batch(before_ids, skip_special_tokens=False)
        base_differing += [(line, d) for line, d in zip(part, decoded, strict=True) if line != d]
        for line, enc, ids, base_ids in zip(part, after, after_ids, before_ids, strict=True):
            hits: dict[tuple[int, int], int] = {}
            if ids and max(ids) >= lowest:
                offsets = enc.offsets
                for k, token_id in enumerate(ids):
                    if token_id >= lowest and token_id in word_of:
                        hits[offsets[k]] = token_id
            if not hits:
                agree_checked += 1
                agree_differ += ids != base_ids
            occurrences = whole_word_occurrences(line, lexicon, max_len, joined) if lexicon else []
            matched: set[tuple[int, int]] = set()
            for s, e, word in occurrences:
                total += 1
                span = (s, e) if (s, e) in hits else (s - 1, e)
                if (
                    span in hits
                    and word_of[hits[span]] == word
                    and (span[0] == s or line[s - 1] == " ")
                ):
                    covered += 1
                    matched.add(span)
                elif len(uncovered) < SAMPLE:
                    uncovered.append(line[max(0, s - 20) : e + 20].strip())
            for span, token_id in hits.items():
                produced.add(token_id)
                if span not in matched:
                    spurious_count += 1
                    if len(spurious) < SAMPLE:
                        spurious.append(f"{word_of[token_id]!r} in "
                                        f"{line[max(0, span[0] - 20) : span[1] + 20].strip()!r}")

    dead_ids = [i for i in word_of if i not in produced]
    seen_words = {word_of[i] for i in produced}
    ids_of: dict[str, list[int]] = {}
    for i, word in word_of.items():
        ids_of.setdefault(word, []).append(i)
    dead_words = [w for w in ids_of if w not in seen_words]  # no id of the word occurs
    report = {
        "added": {"count": len(lexicon), "ids": len(word_of),
                  "trainable_rows": len(injection.row_ids()), "forms": forms},
        "skipped": {"count": len(injection.skipped), "items": [list(x) for x in injection.skipped]},
        "rejected": {
            "count": len(injection.rejected),
            "items": [list(x) for x in injection.rejected],
        },
        "coverage": (covered / total) if total else None,
        "occurrences": {"total": total, "covered": covered, "uncovered_sample": uncovered},
        "spurious_hits": {"count": spurious_count, "sample": spurious},
        # per word: a word is dead when the text produces none of its ids (a bare form that
        # never occurs is no dead row: it reads the row its space form trains)
        "dead_tokens": {
            "count": len(dead_words),
            "words": len(dead_words),
            "share": (len(dead_words) / len(ids_of)) if ids_of else 0.0,
            "ids": len(dead_ids),
            "id_share": (len(dead_ids) / len(word_of)) if word_of else 0.0,
            "sample": [
                f"{w!r} (ids {', '.join(f'{i} {tokenizer.convert_ids_to_tokens(i)!r}' for i in ids_of[w])})"
                for w in dead_words[:SAMPLE]
            ],
        },
        "round_trip": {
            "exact": not differing,
            "differing_lines": len(differing),
            "differing_chars": sum(_differing_chars(a, b) for a, b in differing),
            "sample": [repr(a[:80]) for a, _ in differing[:5]],
            "base_exact": not base_differing,
            "base_differing_chars": sum(_differing_chars(a, b) for a, b in base_differing),
        },
        "base_agreement": {"lines_without_new_ids": agree_checked, "differing": agree_differ},
        "tokens_before": tokens_before,
        "tokens_after": tokens_after,
        "token_ratio": (tokens_after / tokens_before) if tokens_before else None,
        "text_chars": len(text),
        "tokenizer_pipeline": getattr(injection, "pipeline", None),
    }
    extra = getattr(injection, "report_extra", None)  # an injector's own keys, e.g. bpe-merges'
    if callable(extra):  # "segmentation_changes"
        report.update(extra(base_tokenizer, tokenizer, text))
    report["seconds"] = round(time.perf_counter() - started, 3)
    return report
