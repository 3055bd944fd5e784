"""Apply an injection to a model: resize, initialise new input and output rows (one per word,
a bare spelling's row its word's plus the form shift)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from wake2vec.errors import TrainingError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from wake2vec.api import Initializer, Injection
    from wake2vec.vocab.morphology import Morphology



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




