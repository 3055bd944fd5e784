"""Study plots as metrics: a 2-D projection of new tokens among base tokens, and per-token
diagnostics (top-k neighbour overlap and norm change between snapshots).

Both sample rows with a stated seed and store compact per-point data in metrics.json so the report
can draw them and ``wake2vec analyze`` can redo them. The projection is t-SNE (scikit-learn) by
default, UMAP when ``method = "umap"`` and ``umap-learn`` is installed, or PCA; rows are reduced to
50 principal components first, as is usual before t-SNE.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field
from wake2vec_plugins.metrics.geometry import (
    histogram,
    jsonable,
    row_ids,
    rows,
    sample_ids,
    shared_ids,
)

from wake2vec import hookimpl
from wake2vec.api import Metric, MetricContext, Params
from wake2vec.errors import UserInputError

if TYPE_CHECKING:
    import numpy as np


def _round(values: Any, digits: int = 4) -> list[Any]:
    return [round(float(v), digits) for v in values]


def _project(x: np.ndarray, method: str, seed: int) -> np.ndarray:
    import numpy as np

    x = x - x.mean(axis=0, keepdims=True)
    if method != "pca" and x.shape[1] > 50:
        from sklearn.decomposition import PCA

        x = PCA(n_components=min(50, *x.shape), random_state=seed).fit_transform(x)
    if method == "pca" or x.shape[0] < 5:
        from sklearn.decomposition import PCA

        out = PCA(n_components=2, random_state=seed).fit_transform(x) if min(x.shape) >= 2 else np.zeros((len(x), 2))
        return out
    if method == "umap":
        try:
            import umap
        except ImportError:
            raise UserInputError(
                "metric projection: method 'umap' needs umap-learn (pip install umap-learn); "
                "or use method = 'tsne'") from None
        return umap.UMAP(n_components=2, random_state=seed).fit_transform(x)
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3.0)))
    return TSNE(n_components=2, init="pca", perplexity=perplexity, max_iter=tsne_iterations(len(x)),
                random_state=seed).fit_transform(x)


def tsne_iterations(points: int) -> int:
    """t-SNE iterations: scikit-learn's minimum (250) beyond 500 points, more below."""
    return 500 if points <= 500 else 250


class Projection(Metric):
    """2-D projection (t-SNE, UMAP or PCA) of a sample of new and base rows after the phase."""

    name: ClassVar[str] = "projection"

    class Params(Params):
        method: Literal["tsne", "umap", "pca"] = "tsne"
        base_sample: int = Field(default=600, ge=10, le=100_000)
        new_sample: int = Field(default=600, ge=10, le=100_000)
        labels: int = Field(default=12, ge=0, le=200)  # new tokens named on the plot
        every_phase: bool = False  # t-SNE takes seconds: by default only after the last phase

    def compute(self, ctx: MetricContext) -> dict[str, Any]:
        """``method``, ``seed``; ``points``: ``{"x", "y", "kind" ("base"|"new"), "group"}`` lists of
        the sampled rows of the ``after`` snapshot; ``labels``: some new tokens with their point
        index. ``group`` is the new word's morpheme group or device when the run has that data
        (``ctx.groups``), else ``"new"``/``"base"``."""
        import numpy as np

        if not (self.params.every_phase or ctx.last_phase):
            return {"skipped": "computed after the last phase only (every_phase = false)"}
        snap = ctx.after
        base = sample_ids(row_ids(snap, "base"), self.params.base_sample, ctx.seed)
        new = sample_ids(row_ids(snap, "new"), self.params.new_sample, ctx.seed + 1)
        ids = base + new
        matrix = rows(snap, ids).double().numpy() if ids else np.zeros((0, 2))
        coords = _project(matrix, self.params.method, ctx.seed) if len(ids) else np.zeros((0, 2))
        words = _words_by_id(ctx)
        groups = ctx.groups or {}
        kinds = ["base"] * len(base) + ["new"] * len(new)
        group = [groups.get(words.get(i, ""), kind) for i, kind in zip(ids, kinds, strict=True)]
        labelled = [len(base) + j for j in range(min(self.params.labels, len(new)))]
        return jsonable({
            "method": self.params.method,
            "seed": ctx.seed,
            "snapshot": snap.label,
            "points": {"x": _round(coords[:, 0]), "y": _round(coords[:, 1]), "kind": kinds, "group": group},
            "labels": [{"index": i, "token": words.get(ids[i]) or _token(ctx, ids[i])} for i in labelled],
        })


class Diagnostics(Metric):
    """Per new token between snapshots: top-k base-neighbour overlap and norm change."""

    name: ClassVar[str] = "diagnostics"

    class Params(Params):
        k: int = Field(default=5, ge=1, le=100)
        sample: int = Field(default=2000, ge=10, le=1_000_000)
        bins: int = Field(default=30, ge=2, le=1000)

    def compute(self, ctx: MetricContext) -> dict[str, Any]:
        """``k``, ``seed``, ``tokens`` (sampled new tokens); ``overlap``: histogram of each
        token's share of its top-k base neighbours kept (k + 1 bins at 0, 1/k, ..., 1);
        ``norm_change``: histogram of ``|after| - |before|``; ``points``: the per-token pairs
        (``overlap``, ``norm_change``) for the scatter plot."""
        import torch

        from wake2vec.analysis.geometry import nearest_neighbours, row_norms

        k = self.params.k
        ids = sample_ids(shared_ids(row_ids(ctx.before, "new"), row_ids(ctx.after, "new")),
                         self.params.sample, ctx.seed)
        base_ids = shared_ids(row_ids(ctx.before, "base"), row_ids(ctx.after, "base"))
        if not ids or not base_ids:
            return {"k": k, "seed": ctx.seed, "tokens": 0}
        found = {}
        for key, snap in (("before", ctx.before), ("after", ctx.after)):
            found[key] = nearest_neighbours(rows(snap, ids), rows(snap, base_ids), k)[1]
        shared = (found["before"].unsqueeze(2) == found["after"].unsqueeze(1)).any(dim=2).sum(dim=1)
        overlap = shared.double() / found["before"].shape[1]
        change = row_norms(rows(ctx.after, ids)) - row_norms(rows(ctx.before, ids))
        kk = found["before"].shape[1]
        counts = torch.bincount(shared, minlength=kk + 1).tolist()
        lo, hi = float(change.min()), float(change.max())
        return jsonable({
            "k": kk,
            "seed": ctx.seed,
            "tokens": len(ids),
            "overlap": {"values": [j / kk for j in range(kk + 1)], "counts": counts,
                        "mean": float(overlap.mean())},
            "norm_change": {"mean": float(change.mean()), **histogram(change, lo, hi, self.params.bins)},
            "points": {"overlap": _round(overlap, 3), "norm_change": _round(change, 5)},
        })


def _words_by_id(ctx: MetricContext) -> dict[int, str]:
    new = list(ctx.after.new_ids)
    words = list(ctx.new_words or [])
    return {i: w for i, w in zip(new, words, strict=False) if w}


def _token(ctx: MetricContext, token_id: int) -> str | None:
    tokenizer = ctx.tokenizer
    if tokenizer is None:
        return None
    return tokenizer.convert_ids_to_tokens(int(token_id))


@hookimpl
def wake2vec_register_metrics() -> list[type]:
    return [Projection, Diagnostics]
