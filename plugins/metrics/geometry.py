"""Built-in embedding-geometry metrics, each comparing a before and an after snapshot.

norms, isotropy, drift, neighbours, pca-dims, pairwise-cosine and pip-loss; every result is
plain JSON (numbers, strings, lists; NaN written as null). Rows are always selected by id.
Distributions the report draws are stored as histograms, ``{"bin_edges": [b + 1 floats],
"counts": [b ints]}`` (see :func:`histogram`), never as raw per-row values.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, field_validator

from wake2vec import hookimpl
from wake2vec.api import Metric, MetricContext, Params, Snapshot

if TYPE_CHECKING:
    import torch

ROW_SETS: tuple[str, ...] = ("base", "new", "all")


def jsonable(value: Any) -> Any:
    """``value`` with tensors and numpy values turned into lists and numbers, and NaN or
    infinite floats into None, so ``json.dumps(..., allow_nan=False)`` accepts it."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # torch tensors, numpy arrays and scalars
        return jsonable(value.tolist())
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    raise TypeError(f"cannot represent {type(value).__name__} in a metric result")


def row_ids(snapshot: Snapshot, which: str) -> list[int]:
    """The ids of one row set of a snapshot: ``base``, ``new`` or ``all`` (base then new)."""
    if which == "base":
        return list(snapshot.base_ids)
    if which == "new":
        return list(snapshot.new_ids)
    if which == "all":
        return list(snapshot.base_ids) + list(snapshot.new_ids)
    raise ValueError(f"unknown row set {which!r}")


def sample_ids(ids: list[int], size: int | None, seed: int) -> list[int]:
    """At most ``size`` of ``ids`` drawn without replacement with ``seed`` (in their order);
    the same ids and seed always give the same sample, so before and after stay paired."""
    import torch

    if size is None or len(ids) <= size:
        return list(ids)
    gen = torch.Generator().manual_seed(seed)
    keep = torch.randperm(len(ids), generator=gen)[:size].sort().values
    return [ids[i] for i in keep.tolist()]


def shared_ids(first: list[int], second: list[int]) -> list[int]:
    """Ids present in both lists, in the order of ``first``."""
    present = set(second)
    return [i for i in first if i in present]


def rows(snapshot: Snapshot, ids: list[int]) -> torch.Tensor:
    from wake2vec.analysis.geometry import select_rows

    return select_rows(snapshot.weight, ids)


def histogram(values: torch.Tensor, lo: float, hi: float, bins: int) -> dict[str, list[Any]]:
    """``{"bin_edges": bins + 1 equal-width edges from lo to hi, "counts": bins ints}`` of
    ``values``; values outside [lo, hi] count in the end bins, so counts sum to len(values)."""
    import torch

    if not hi > lo:
        lo, hi = lo - 0.5e-6, lo + 0.5e-6  # every value equal: one narrow range around it
    edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
    if values.numel() == 0:
        return {"bin_edges": _short(edges), "counts": [0] * bins}
    clipped = values.double().clamp(lo, hi)
    counts = torch.histc(clipped, bins=bins, min=lo, max=hi).long()
    return {"bin_edges": _short(edges), "counts": counts.tolist()}


def _short(edges: torch.Tensor) -> list[float]:
    return [float(f"{e:.7g}") for e in edges.tolist()]  # compact JSON, no 0.5499999999999999


def _per_snapshot(ctx: MetricContext, measure: Any) -> dict[str, Any]:
    out = {}
    for key, snap in (("before", ctx.before), ("after", ctx.after)):
        out[key] = {"label": snap.label, **measure(snap)}
    return out


class Norms(Metric):
    """Row-norm distributions of base and new rows: summary, Welch t, Mann-Whitney U, Cohen's d."""

    name: ClassVar[str] = "norms"

    class Params(Params):
        bins: int = Field(default=40, ge=2, le=1000)  # histogram bins

    def compute(self, ctx: MetricContext) -> dict[str, Any]:
        """``before``/``after``: per-snapshot statistics (see ``analysis.norm_stats``);
        ``histogram``: ``{"bin_edges", "before": {"base": counts, "new": counts}, "after": ...}``,
        row-norm counts on one set of edges spanning every norm of both snapshots."""
        from wake2vec.analysis.geometry import norm_stats

        def measure(snap: Snapshot) -> dict[str, Any]:
            return norm_stats(rows(snap, snap.base_ids), rows(snap, snap.new_ids))

        out = _per_snapshot(ctx, measure)
        out["histogram"] = self._histogram(ctx)
        return jsonable(out)

    def _histogram(self, ctx: MetricContext) -> dict[str, Any]:
        from wake2vec.analysis.geometry import row_norms

        norms = {
            (key, which): row_norms(rows(snap, row_ids(snap, which)))
            for key, snap in (("before", ctx.before), ("after", ctx.after))
            for which in ("base", "new")
        }
        present = [v for v in norms.values() if v.numel()]
        lo = min((float(v.min()) for v in present), default=0.0)
        hi = max((float(v.max()) for v in present), default=1.0)
        out: dict[str, Any] = {}
        for (key, which), values in norms.items():
            hist = histogram(values, lo, hi, self.params.bins)
            out["bin_edges"] = hist["bin_edges"]  # the same for every set
            out.setdefault(key, {})[which] = hist["counts"]
        return out


class Isotropy(Metric):
    """Isotropy of base, new and all rows: Mu et al. partition ratio and IsoScore."""

    name: ClassVar[str] = "isotropy"

    class Params(Params):
        sample_size: int | None = Field(default=10_000, ge=2)  # rows per set; None: all rows

    def compute(self, ctx: MetricContext) -> dict[str, Any]:
        from wake2vec.analysis.geometry import Memo
        from wake2vec.analysis.spectrum import isotropy

        memo = Memo()  # a row set equal in both snapshots (base rows after P1) is measured once

        size = self.params.sample_size

        def measure(snap: Snapshot) -> dict[str, Any]:
            out = {}
            for which in ROW_SETS:
                ids = sample_ids(row_ids(snap, which), size, ctx.seed)
                if len(ids) < 2:
                    out[which] = {"rows": len(ids), "mu": None, "isoscore": None}
                    continue
                x = rows(snap, ids)
                out[which] = {"rows": len(ids), **memo(isotropy, x)}
            return out

        return jsonable({"sample_size": size, "seed": ctx.seed, **_per_snapshot(ctx, measure)})


class Drift(Metric):
    """Cosine between each row before and after (matched by id), for base and new rows."""

    name: ClassVar[str] = "drift"

    class Params(Params):
        bins: int = Field(default=40, ge=2, le=1000)  # histogram bins

    def compute(self, ctx: MetricContext) -> dict[str, Any]:
        """Per row set (``base``, ``new``): rows, mean and min cosine, changed rows, largest
        change, and ``histogram`` (:func:`histogram` of the per-row cosines over [lo, 1], lo the
        smallest cosine of either set rounded down to a multiple of 0.05; same edges for both)."""
        from wake2vec.analysis.geometry import drift, row_changes

        cosines: dict[str, torch.Tensor] = {}
        out: dict[str, Any] = {"before": ctx.before.label, "after": ctx.after.label}
        for which in ("base", "new"):
            ids = shared_ids(row_ids(ctx.before, which), row_ids(ctx.after, which))
            if not ids:
                out[which] = {"rows": 0, "mean": None, "min": None}
                continue
            a, b = rows(ctx.before, ids), rows(ctx.after, ids)
            cos = cosines[which] = drift(a, b)
            out[which] = {
                "rows": len(ids),
                "mean": float(cos.mean()),
                "min": float(cos.min()),
                **row_changes(a, b),
            }
        lo = min((float(c.min()) for c in cosines.values()), default=0.0)
        lo = max(-1.0, min(0.95, math.floor(lo * 20.0) / 20.0))
        for which, cos in cosines.items():
            out[which]["histogram"] = histogram(cos, lo, 1.0, self.params.bins)
        return jsonable(out)


class Neighbours(Metric):
    """Nearest base tokens of new tokens before and after, and how many of the top k stay."""

    name: ClassVar[str] = "neighbours"

    class Params(Params):
        k: int = Field(default=10, ge=1, le=1000)
        examples: int = Field(default=20, ge=0)  # new tokens listed with their neighbours
        overlap_sample: int | None = Field(default=2_000, ge=1)  # None: every new token

    def compute(self, ctx: MetricContext) -> dict[str, Any]:
        """k, seed, queries, overlap (mean share of each query's top k kept), examples (new
        tokens with their top k before and after) and ``nearest_cosine``: ``{"before"|"after":
        {"mean", "bin_edges", "counts"}}``, the cosine of each query's nearest base token
        (:func:`histogram`, 40 bins over [-1, 1])."""
        from wake2vec.analysis.geometry import nearest_neighbours, neighbour_overlap

        k = self.params.k
        new = shared_ids(row_ids(ctx.before, "new"), row_ids(ctx.after, "new"))
        query_ids = sample_ids(new, self.params.overlap_sample, ctx.seed)
        shown = set(sample_ids(new, self.params.examples, ctx.seed + 1))
        position = {token_id: i for i, token_id in enumerate(new)}
        query_ids = sorted(set(query_ids) | shown, key=position.__getitem__)
        words = dict(zip(ctx.after.new_ids, ctx.new_words, strict=False))
        if len(ctx.new_words) != len(ctx.after.new_ids):
            words = {}
        result: dict[str, Any] = {"k": k, "seed": ctx.seed, "queries": len(query_ids)}
        # the samples drawn: overlap queries with ``seed``, listed examples with ``seed + 1``
        result["sample"] = {"overlap": self.params.overlap_sample, "new_tokens": len(new)}
        result["examples_seed"] = ctx.seed + 1
        if not query_ids or not ctx.before.base_ids or not ctx.after.base_ids:
            return jsonable({**result, "overlap": None, "examples": []})
        found = {}
        for key, snap in (("before", ctx.before), ("after", ctx.after)):
            base_ids = row_ids(snap, "base")
            scores, positions = nearest_neighbours(rows(snap, query_ids), rows(snap, base_ids), k)
            ids = _lookup(base_ids, positions)
            found[key] = (scores, ids)
        result["overlap"] = neighbour_overlap(found["before"][1], found["after"][1])
        result["nearest_cosine"] = {  # cosine of each query's nearest base token
            key: {"mean": float(scores[:, 0].mean()), **histogram(scores[:, 0], -1.0, 1.0, 40)}
            for key, (scores, _) in found.items()
        }
        examples = []
        for row, qid in enumerate(query_ids):
            if qid not in shown:
                continue
            entry: dict[str, Any] = {"id": qid, "word": words.get(qid) or _token(ctx, qid)}
            for key, (scores, ids) in found.items():
                entry[key] = [
                    {"id": int(i), "token": _token(ctx, int(i)), "cosine": float(s)}
                    for s, i in zip(scores[row].tolist(), ids[row].tolist(), strict=True)
                ]
            examples.append(entry)
        result["examples"] = examples
        return jsonable(result)


def _lookup(ids: list[int], positions: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.as_tensor(ids, dtype=torch.long)[positions]


def _token(ctx: MetricContext, token_id: int) -> str | None:
    if ctx.tokenizer is None:
        return None
    try:
        return ctx.tokenizer.decode([token_id])
    except Exception:  # some tokenizers refuse single ids they cannot decode alone
        return ctx.tokenizer.convert_ids_to_tokens(token_id)


class PcaDims(Metric):
    """Principal components needed for 90% and 95% of the variance of base, new and all rows."""

    name: ClassVar[str] = "pca-dims"

    class Params(Params):
        thresholds: tuple[float, ...] = (0.9, 0.95)
        sample_size: int | None = Field(default=None, ge=2)  # None: every row

        @field_validator("thresholds")
        @classmethod
        def _shares(cls, value: tuple[float, ...]) -> tuple[float, ...]:
            if not value or not all(0.0 < t <= 1.0 for t in value):
                raise ValueError("give one or more variance shares in (0, 1]")
            return value

    def compute(self, ctx: MetricContext) -> dict[str, Any]:
        from wake2vec.analysis.geometry import Memo
        from wake2vec.analysis.spectrum import merge_moments, moments, pca_dims

        memo = Memo()  # a row set equal in both snapshots (base rows after P1) is measured once

        size, thresholds = self.params.sample_size, self.params.thresholds

        def measure(snap: Snapshot) -> dict[str, Any]:
            sets = {w: sample_ids(row_ids(snap, w), size, ctx.seed) for w in ROW_SETS}
            stats = {w: memo(moments, rows(snap, sets[w])) for w in ("base", "new")}
            if size is None:  # every row: base + new moments give those of all rows
                stats["all"] = merge_moments(stats["base"], stats["new"])
            else:
                stats["all"] = moments(rows(snap, sets["all"]))
            out: dict[str, Any] = {"hidden": int(snap.weight.shape[1])}
            for which in ROW_SETS:
                n = stats[which].n
                dims = pca_dims(stats[which], thresholds) if n > 1 else None
                out[which] = {"rows": n, "dims": dims}
            return out

        return jsonable({"thresholds": list(thresholds), **_per_snapshot(ctx, measure)})


class PairwiseCosine(Metric):
    """Cosines of random base-base, new-new and base-new pairs, with a KS test."""

    name: ClassVar[str] = "pairwise-cosine"

    class Params(Params):
        pairs: int = Field(default=10_000, ge=10)
        bins: int = Field(default=40, ge=2, le=1000)  # histogram bins over [-1, 1]

    def compute(self, ctx: MetricContext) -> dict[str, Any]:
        import torch

        from wake2vec.analysis.spectrum import pairwise_cosines

        bins = self.params.bins

        def measure(snap: Snapshot) -> dict[str, Any]:
            base, new = rows(snap, snap.base_ids), rows(snap, snap.new_ids)
            if base.shape[0] < 2 or new.shape[0] < 2:
                return {"skipped": "fewer than two base or new rows"}
            gen = torch.Generator().manual_seed(ctx.seed)
            res = pairwise_cosines(base, new, self.params.pairs, gen)
            out: dict[str, Any] = {"ks_base_new_new": res["ks"]}
            for group in ("base_base", "new_new", "base_new"):
                values = res[group]
                q = torch.quantile(values, torch.tensor([0.05, 0.5, 0.95], dtype=values.dtype))
                out[group] = {
                    "mean": float(values.mean()),
                    "std": float(values.std()),
                    "p05": float(q[0]),
                    "median": float(q[1]),
                    "p95": float(q[2]),
                    "histogram": torch.histc(values, bins=bins, min=-1.0, max=1.0).long(),
                }
            return out

        edges = torch.linspace(-1.0, 1.0, bins + 1)
        head = {"pairs": self.params.pairs, "seed": ctx.seed, "bin_edges": edges}
        return jsonable({**head, **_per_snapshot(ctx, measure)})


class PipLoss(Metric):
    """PIP loss ||AA^T - BB^T||_F between before and after, for base, new and all rows."""

    name: ClassVar[str] = "pip-loss"

    def compute(self, ctx: MetricContext) -> dict[str, Any]:
        from wake2vec.analysis.spectrum import pip_from_grams, pip_grams

        out: dict[str, Any] = {"before": ctx.before.label, "after": ctx.after.label}
        grams = {}
        for which in ("base", "new"):
            ids = shared_ids(row_ids(ctx.before, which), row_ids(ctx.after, which))
            grams[which] = (len(ids), pip_grams(rows(ctx.before, ids), rows(ctx.after, ids)))
        (n_base, base), (n_new, new) = grams["base"], grams["new"]
        union = {key: base[key] + new[key] for key in base}  # same keys: same hidden size
        sets = (("base", n_base, base), ("new", n_new, new), ("all", n_base + n_new, union))
        for which, n, g in sets:
            out[which] = {"rows": n, **pip_from_grams(g)} if n else {"rows": 0, "pip": None}
        return jsonable(out)


@hookimpl
def wake2vec_register_metrics() -> list[type]:
    return [Norms, Isotropy, Drift, Neighbours, PcaDims, PairwiseCosine, PipLoss]
