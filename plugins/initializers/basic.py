"""Built-in initialisers for new embedding rows: spherical, mean, compositional, subword-mean.

Each computes in float32 from the base rows only (``ctx.base_ids``, never padding rows), draws
all randomness from ``ctx.generator``, works on whole batches (one tokeniser batch call, a few
matrix operations) and gives every row of the same word the same vector: a word injected in two
forms (see the whole-word injector) starts as one point.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from wake2vec import hookimpl
from wake2vec.api import InitContext, Initializer, Params
from wake2vec.errors import TrainingError

if TYPE_CHECKING:
    import torch

log = logging.getLogger("wake2vec")


# --------------------------------------------------------------------------- shared helpers


def base_rows(base: torch.Tensor, ctx: InitContext) -> torch.Tensor:
    """The base rows in float32 (a view when the base ids are 0..n-1)."""
    import torch

    ids = ctx.base_ids
    if not ids:
        raise TrainingError("no base rows to initialise from (empty base_ids)")
    if ids[0] == 0 and ids[-1] == len(ids) - 1 and all(i == n for n, i in enumerate(ids)):
        rows = base[: len(ids)]
    else:
        rows = base.index_select(0, torch.tensor(ids, dtype=torch.long, device=base.device))
    return rows.float()


def unique_words(ctx: InitContext) -> tuple[list[str], torch.Tensor]:
    """Distinct words in first-seen order, and for each row the index of its word."""
    import torch

    order: dict[str, int] = {}
    index = [order.setdefault(w, len(order)) for w in ctx.words]
    return list(order), torch.tensor(index, dtype=torch.long)


def encode_pieces(tokenizer, texts: list[str]) -> list[list[int]]:
    """Base-tokenizer ids of each text (no special tokens), in one batch call."""
    if not texts:
        return []
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return [e.ids for e in backend.encode_batch(list(texts), add_special_tokens=False)]
    return tokenizer(list(texts), add_special_tokens=False)["input_ids"]


def piece_means(
    rows: torch.Tensor, pieces: list[list[int]], allowed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean base row of each piece list (ids >= ``allowed`` ignored); also a mask of lists
    that had at least one usable piece."""
    import torch
    import torch.nn.functional as F

    flat, offsets, ok = [], [], []
    for ids in pieces:
        offsets.append(len(flat))
        usable = [i for i in ids if 0 <= i < allowed]
        ok.append(bool(usable))
        flat.extend(usable)
    if not flat:
        return torch.zeros(len(pieces), rows.shape[1]), torch.zeros(len(pieces), dtype=torch.bool)
    means = F.embedding_bag(
        torch.tensor(flat, dtype=torch.long),
        rows,
        torch.tensor(offsets, dtype=torch.long),
        mode="mean",
    )
    return means, torch.tensor(ok, dtype=torch.bool)


def _needs_tokenizer(ctx: InitContext, name: str):
    if ctx.base_tokenizer is None:
        raise TrainingError(
            f"initializer {name!r} needs the base tokenizer, which was not provided"
        )
    return ctx.base_tokenizer


def _base_position(ctx: InitContext) -> dict[int, int]:
    return {i: n for n, i in enumerate(ctx.base_ids)}


def _remap(pieces: list[list[int]], position: dict[int, int]) -> list[list[int]]:
    """Tokenizer ids to positions among the base rows (ids outside them dropped)."""
    return [[position[i] for i in ids if i in position] for ids in pieces]


# --------------------------------------------------------------------------- initialisers


class Spherical(Initializer):
    """Random directions at radius k * std(base rows) * sqrt(hidden)."""

    name: ClassVar[str] = "spherical"

    class Params(Params):
        k: float = Field(1.5, gt=0, description="radius in units of std(base) * sqrt(hidden)")

    def initialize(self, base: torch.Tensor, ctx: InitContext) -> torch.Tensor:
        import torch

        rows = base_rows(base, ctx)
        hidden = rows.shape[1]
        radius = self.params.k * float(rows.std()) * hidden**0.5
        words, index = unique_words(ctx)
        direction = torch.randn(len(words), hidden, generator=ctx.generator, dtype=torch.float32)
        direction.mul_(radius / direction.norm(dim=1, keepdim=True).clamp_min(1e-12))
        return direction[index]


class Mean(Initializer):
    """The mean of the base rows, or samples around it with the base covariance.

    With ``covariance_scale`` s > 0 each word draws ``mean + sqrt(s) * L z`` (L the Cholesky
    factor of the covariance, z standard normal): one matrix product for all words, unlike
    ``resize_token_embeddings(mean_resizing=True)``, which scales the covariance by 1e-9 (every
    row the mean) and takes minutes. The covariance is estimated from at most
    ``covariance_rows`` base rows drawn with the run's generator."""

    name: ClassVar[str] = "mean"

    class Params(Params):
        covariance_scale: float = Field(
            0.0,
            ge=0,
            description="0: every row is the exact mean; s > 0: draw from N(mean, s * covariance)",
        )
        covariance_rows: int = Field(
            8192,
            ge=0,
            description="estimate the covariance from at most this many base rows (0: all)",
        )

    def initialize(self, base: torch.Tensor, ctx: InitContext) -> torch.Tensor:
        import torch

        rows = base_rows(base, ctx)
        mean = rows.mean(dim=0)
        words, index = unique_words(ctx)
        if self.params.covariance_scale == 0:
            return mean.expand(len(ctx.ids), -1).clone()
        sample = rows
        limit = self.params.covariance_rows
        if limit and rows.shape[0] > limit:
            chosen = torch.randperm(rows.shape[0], generator=ctx.generator)[:limit].sort().values
            sample = rows[chosen]
        centred = sample - mean
        cov = centred.T @ centred / max(1, sample.shape[0] - 1)
        factor = _cholesky(cov)
        z = torch.randn(len(words), rows.shape[1], generator=ctx.generator, dtype=torch.float32)
        samples = (z @ factor.T).mul_(self.params.covariance_scale**0.5).add_(mean)
        return samples[index]


def _cholesky(cov: torch.Tensor) -> torch.Tensor:
    """Lower Cholesky factor, adding diagonal jitter when the covariance is singular."""
    import torch

    jitter = 0.0
    scale = float(cov.diagonal().mean()) or 1.0
    for _ in range(6):
        factor, info = torch.linalg.cholesky_ex(cov + jitter * torch.eye(cov.shape[0]))
        if int(info) == 0:
            return factor
        jitter = scale * (1e-6 if jitter == 0 else jitter / scale * 100)
    raise TrainingError("the base covariance is not positive definite, even with jitter")


class SubwordMean(Initializer):
    """The mean of the base tokenizer's pieces of the word as it appears in running text."""

    name: ClassVar[str] = "subword-mean"

    def initialize(self, base: torch.Tensor, ctx: InitContext) -> torch.Tensor:
        tokenizer = _needs_tokenizer(ctx, self.name)
        rows = base_rows(base, ctx)
        words, index = unique_words(ctx)
        pieces = _remap(encode_pieces(tokenizer, [" " + w for w in words]), _base_position(ctx))
        means, ok = piece_means(rows, pieces, rows.shape[0])
        if not bool(ok.all()):
            means[~ok] = rows.mean(dim=0)
        return means[index]


class Compositional(Initializer):
    """alpha * E(prefix) + (1 - 2 alpha) * E(root) + alpha * E(suffix) + noise, from the morphology.

    Words are split by greedy longest prefix and suffix (``wake2vec.vocab.morphology.segment``). A
    word without a prefix or suffix gets the weights of the parts it has, renormalised to sum
    to one. A root that is one base token in running text uses that row; any other root gets a
    random vector (``root_fallback="random"``, the study's choice) or its piece mean. Without
    morphology data every word is its own root: the subword mean, with a warning."""

    name: ClassVar[str] = "compositional"

    class Params(Params):
        alpha: float = Field(0.25, ge=0, le=0.5, description="weight of each affix")
        noise: float = Field(
            0.01, ge=0, description="std of the added noise, in units of std(base)"
        )
        unknown_root_scale: float = Field(
            1.0, ge=0, description="std of an unknown root's random vector, in units of std(base)"
        )
        root_fallback: Literal["random", "subword-mean"] = Field(
            "random",
            description="a root that is not one base token: random vector at base std, or its piece mean",
        )

    def initialize(self, base: torch.Tensor, ctx: InitContext) -> torch.Tensor:
        import torch

        from wake2vec.vocab.morphology import Segmentation, segmenter

        tokenizer = _needs_tokenizer(ctx, self.name)
        rows = base_rows(base, ctx)
        std = float(rows.std())
        position = _base_position(ctx)
        words, index = unique_words(ctx)
        hidden = rows.shape[1]
        if ctx.morphology is None:
            log.warning(
                "compositional initializer: no morphology given; using the subword mean of each word"
            )
            segments = [Segmentation("", w, "") for w in words]
        else:
            split = segmenter(ctx.morphology)
            segments = [split(w) for w in words]

        affixes = {("prefix", s.prefix) for s in segments if s.prefix} | {
            ("suffix", s.suffix) for s in segments if s.suffix
        }
        affix_vec = self._affix_vectors(sorted(affixes), rows, tokenizer, ctx, position)

        roots = list(dict.fromkeys(s.root for s in segments))
        root_ids = _remap(encode_pieces(tokenizer, [" " + r for r in roots]), position)
        root_vec, _ = piece_means(rows, root_ids, rows.shape[0])
        if ctx.morphology is not None and self.params.root_fallback == "random":
            unknown = (
                torch.tensor([len(ids) != 1 for ids in root_ids], dtype=torch.bool)
                .nonzero()
                .squeeze(1)
            )
            if unknown.numel():
                root_vec[unknown] = torch.randn(
                    unknown.numel(), hidden, generator=ctx.generator
                ) * (self.params.unknown_root_scale * std)
        root_at = {r: n for n, r in enumerate(roots)}

        alpha = self.params.alpha
        keys = list(affix_vec)
        affix_at = {k: n for n, k in enumerate(keys)}
        root_index = torch.tensor([root_at[s.root] for s in segments], dtype=torch.long)
        out = root_vec[root_index].mul_(1 - 2 * alpha)
        weight = torch.full((len(words), 1), 1 - 2 * alpha)
        if keys:
            affix_matrix = torch.stack([affix_vec[k] for k in keys]).mul_(alpha)
            for kind in ("prefix", "suffix"):
                parts = [getattr(s, kind) for s in segments]
                where = torch.tensor([n for n, part in enumerate(parts) if part], dtype=torch.long)
                if where.numel():
                    at = torch.tensor(
                        [affix_at[(kind, parts[n])] for n in where.tolist()], dtype=torch.long
                    )
                    out.index_add_(0, where, affix_matrix[at])
                    weight[where] += alpha
        out.div_(weight.clamp_min(1e-12))
        bare = (weight.squeeze(1) == 0).nonzero().squeeze(1)  # alpha 0.5 and no affix: the root
        if bare.numel():
            out[bare] = root_vec[root_index[bare]]
        if self.params.noise > 0:
            out.add_(
                torch.randn(len(words), hidden, generator=ctx.generator),
                alpha=self.params.noise * std,
            )
        return out[index]

    @staticmethod
    def _affix_vectors(
        affixes, rows, tokenizer, ctx, position
    ) -> dict[tuple[str, str], torch.Tensor]:
        """Each affix's row when the base tokenizer has it as one token (a prefix as it starts a
        word in running text, a suffix as a word-internal piece), else the mean of its example
        words' piece means, else the mean of its own pieces."""

        if not affixes:
            return {}
        backend = getattr(tokenizer, "backend_tokenizer", None)
        texts = [(" " + a if kind == "prefix" else a) for kind, a in affixes]
        encoded = _remap(encode_pieces(tokenizer, texts), position)
        result: dict[tuple[str, str], torch.Tensor] = {}
        pending = []
        for (kind, affix), ids in zip(affixes, encoded, strict=True):
            piece = (
                backend.token_to_id(affix) if (backend is not None and kind == "suffix") else None
            )
            if piece is not None and piece in position:
                result[(kind, affix)] = rows[position[piece]]
            elif len(ids) == 1:
                result[(kind, affix)] = rows[ids[0]]
            else:
                pending.append((kind, affix, ids))
        if not pending:
            return result
        examples = [
            ctx.morphology.examples(affix, kind) if ctx.morphology else []
            for kind, affix, _ in pending
        ]
        flat = [e for ex in examples for e in ex]
        example_means, example_ok = piece_means(
            rows, _remap(encode_pieces(tokenizer, [" " + e for e in flat]), position), rows.shape[0]
        )
        own_means, _ = piece_means(rows, [ids for _, _, ids in pending], rows.shape[0])
        start = 0
        for n, ((kind, affix, _), ex) in enumerate(zip(pending, examples, strict=True)):
            block = slice(start, start + len(ex))
            start += len(ex)
            usable = example_ok[block]
            if ex and bool(usable.any()):
                result[(kind, affix)] = example_means[block][usable].mean(dim=0)
            else:
                result[(kind, affix)] = own_means[n]
        return result


@hookimpl
def wake2vec_register_initializers() -> list[type]:
    return [Spherical, Mean, Compositional, SubwordMean]
