"""Embedding-geometry measures as pure functions on row matrices (tensors).

Norms, isotropy (Mu et al. 2018; IsoScore), drift, nearest neighbours, intrinsic dimension,
pairwise cosines and PIP loss.

Every function takes row matrices (rows x hidden) already selected by token id (use
:func:`select_rows`); none of them selects rows by position. Large matrices are processed in row
chunks, so memory stays bounded at vocabulary scale (77,000 x 2,048 and beyond). Sums that lose
precision in float32 (Gram matrices, covariances, log-partition functions) are accumulated in
float64. torch, numpy and scipy are imported inside the functions.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# Elements per float64 working chunk (32 MiB); similarity blocks use float32 (64 MiB).
_CHUNK_ELEMENTS = 1 << 22
_SIM_ELEMENTS = 1 << 24


def _as_tensor(x: Any) -> torch.Tensor:
    import torch

    t = torch.as_tensor(x)
    if t.dim() != 2:
        raise ValueError(f"expected a 2-D matrix (rows x hidden), got shape {tuple(t.shape)}")
    return t


def _row_slices(n_rows: int, n_cols: int, budget: int = _CHUNK_ELEMENTS) -> Iterator[slice]:
    step = max(1, budget // max(1, n_cols))
    for start in range(0, n_rows, step):
        yield slice(start, min(n_rows, start + step))


def select_rows(weight: torch.Tensor, ids: Sequence[int]) -> torch.Tensor:
    """Rows of ``weight`` for the token ``ids``, in the order given.

    A view when the ids are one ascending run (``range(a, b)``, the usual base vocabulary),
    else a copy; callers must not modify the result in place. Raises ``ValueError`` naming the
    first id outside the matrix.
    """
    import torch

    ids = list(ids)
    bad = next((i for i in ids if not 0 <= i < weight.shape[0]), None)
    if bad is not None:
        raise ValueError(f"token id {bad} is outside the embedding matrix ({weight.shape[0]} rows)")
    if ids and ids == list(range(ids[0], ids[0] + len(ids))):
        return weight[ids[0] : ids[0] + len(ids)]
    return weight.index_select(0, torch.as_tensor(ids, dtype=torch.long))


def row_norms(x: torch.Tensor) -> torch.Tensor:
    """Euclidean norm of each row, in float64."""
    import torch

    x = _as_tensor(x)
    out = torch.empty(x.shape[0], dtype=torch.float64)
    for sl in _row_slices(x.shape[0], x.shape[1]):
        out[sl] = torch.linalg.vector_norm(x[sl].double(), dim=1)
    return out


def _summary(values: torch.Tensor) -> dict[str, float]:
    n = int(values.numel())
    nan = float("nan")
    return {
        "n": n,
        "mean": float(values.mean()) if n else nan,
        "std": float(values.std(unbiased=True)) if n > 1 else nan,
        "median": float(values.median()) if n else nan,
        "min": float(values.min()) if n else nan,
        "max": float(values.max()) if n else nan,
    }


def norm_stats(base: torch.Tensor, new: torch.Tensor) -> dict[str, Any]:
    """Compare the row-norm distributions of base and new rows.

    For each group: n, mean, std (sample, ddof 1), median, min, max of the Euclidean row norms.
    Tests (new against base): Welch's unequal-variance t-test and the two-sided Mann-Whitney U
    test (scipy.stats), each as ``{"statistic", "pvalue"}``. Effect size: Cohen's d =
    (mean_new - mean_base) / s_pooled with s_pooled = sqrt(((n_b-1) s_b^2 + (n_n-1) s_n^2) /
    (n_b + n_n - 2)). Values that are undefined (fewer than two rows, zero spread) are NaN.
    """
    from scipy import stats

    nb, nn = row_norms(base), row_norms(new)
    out: dict[str, Any] = {"base": _summary(nb), "new": _summary(nn)}
    nan = float("nan")
    if nb.numel() > 1 and nn.numel() > 1:
        a, b = nn.numpy(), nb.numpy()
        t = stats.ttest_ind(a, b, equal_var=False)
        u = stats.mannwhitneyu(a, b, alternative="two-sided")
        out["welch_t"] = {"statistic": float(t.statistic), "pvalue": float(t.pvalue)}
        out["mann_whitney_u"] = {"statistic": float(u.statistic), "pvalue": float(u.pvalue)}
        n1, n2 = nb.numel(), nn.numel()
        pooled_var = ((n1 - 1) * float(nb.var()) + (n2 - 1) * float(nn.var())) / (n1 + n2 - 2)
        pooled = math.sqrt(pooled_var)
        diff = float(nn.mean()) - float(nb.mean())
        out["cohens_d"] = diff / pooled if pooled > 0 else nan
    else:
        out["welch_t"] = {"statistic": nan, "pvalue": nan}
        out["mann_whitney_u"] = {"statistic": nan, "pvalue": nan}
        out["cohens_d"] = nan
    return out


def _gram(a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """a^T b (or a^T a) accumulated over row chunks in float64."""
    import torch

    b_ = a if b is None else b
    if a.shape[0] != b_.shape[0]:
        raise ValueError(f"row counts differ: {a.shape[0]} and {b_.shape[0]}")
    out = torch.zeros(a.shape[1], b_.shape[1], dtype=torch.float64)
    for sl in _row_slices(a.shape[0], max(a.shape[1], b_.shape[1])):
        ca = a[sl].double()
        out += ca.T @ (ca if b is None else b_[sl].double())
    return out


@dataclass(frozen=True)
class Moments:
    """Row count, mean and centred scatter matrix (sum of outer products) of a row set, float64.

    Two row sets combine with :func:`merge_moments`, so the covariance of base + new rows costs
    nothing once each part is known.
    """

    n: int
    mean: torch.Tensor  # hidden
    scatter: torch.Tensor  # hidden x hidden


def moments(x: torch.Tensor) -> Moments:
    """:class:`Moments` of the rows of ``x``, accumulated over row chunks in float64."""
    import torch

    x = _as_tensor(x)
    n, d = x.shape
    mean = torch.zeros(d, dtype=torch.float64)
    for sl in _row_slices(n, d):
        mean += x[sl].double().sum(0)
    mean /= max(n, 1)
    scatter = torch.zeros(d, d, dtype=torch.float64)
    for sl in _row_slices(n, d):
        c = x[sl].double() - mean
        scatter += c.T @ c
    return Moments(n, mean, scatter)


def merge_moments(a: Moments, b: Moments) -> Moments:
    """The :class:`Moments` of the union of two disjoint row sets (parallel-axis rule)."""
    n = a.n + b.n
    if a.n == 0 or b.n == 0:
        return a if b.n == 0 else b
    delta = b.mean - a.mean
    mean = a.mean + delta * (b.n / n)
    scatter = a.scatter + b.scatter + (a.n * b.n / n) * delta.outer(delta)
    return Moments(n, mean, scatter)


def _covariance_eigenvalues(x: torch.Tensor | Moments) -> torch.Tensor:
    """Eigenvalues (descending, clamped at 0) of the hidden x hidden sample covariance."""
    import torch

    m = x if isinstance(x, Moments) else moments(x)
    if m.n < 2:
        raise ValueError(f"need at least 2 rows to estimate a covariance, got {m.n}")
    vals = torch.linalg.eigvalsh(m.scatter / (m.n - 1))
    return vals.clamp_min(0).flip(0)


def isotropy_mu(x: torch.Tensor) -> float:
    """Partition-function isotropy of Mu, Bhat and Viswanath (2018, "All-but-the-top").

    I(X) = min_c Z(c) / max_c Z(c), Z(c) = sum_i exp(c^T x_i), with c ranging over the unit
    eigenvectors of X^T X (both signs, since -c is an eigenvector whenever c is; this also makes
    the value independent of the sign convention of the eigensolver). X is used as given: not
    centred, not normalised, so the measure depends on the scale of the embeddings as in the
    paper. log Z(c) is computed in float64 by log-sum-exp over row chunks, and the ratio is
    returned as exp(min log Z - max log Z), in [0, 1].
    """
    import torch

    x = _as_tensor(x)
    if x.shape[0] == 0:
        raise ValueError("isotropy of an empty set of rows is undefined")
    _, vecs = torch.linalg.eigh(_gram(x))
    dirs = torch.cat([vecs, -vecs], dim=1)  # d x 2d
    log_z = torch.full((dirs.shape[1],), -math.inf, dtype=torch.float64)
    for sl in _row_slices(x.shape[0], dirs.shape[1]):
        proj = x[sl].double() @ dirs
        log_z = torch.logaddexp(log_z, torch.logsumexp(proj, dim=0))
    return float(torch.exp(log_z.min() - log_z.max()))


def isoscore(x: torch.Tensor | Moments) -> float:
    """IsoScore of Rudman, Gillman, Rayne and Eickhoff (2022), in [0, 1].

    With n the hidden size: (1) reorient the cloud by PCA; (2) take the variance vector of the
    reoriented cloud, which is the eigenvalue vector of the sample covariance (n entries, zeros
    included when there are fewer samples than dimensions); (3) normalise it to length sqrt(n);
    (4) isotropy defect delta = ||v - 1|| / sqrt(2 (n - sqrt n)); (5) IsoScore =
    ((n - delta^2 (n - sqrt n))^2 - n) / (n (n - 1)). 1 means variance spread evenly over all n
    directions, 0 means all variance along one direction. The score ignores the cloud's mean.
    ``x`` may be the rows or their :class:`Moments`.
    """
    vals = _covariance_eigenvalues(x)
    n = vals.numel()
    if n < 2:
        raise ValueError("IsoScore needs a hidden size of at least 2")
    norm = float(vals.norm())
    if norm == 0.0:
        return 0.0  # every row identical: no direction is used
    v = vals * (math.sqrt(n) / norm)
    defect = float((v - 1.0).norm()) / math.sqrt(2.0 * (n - math.sqrt(n)))
    k = (n - defect**2 * (n - math.sqrt(n))) ** 2
    return float(min(1.0, max(0.0, (k - n) / (n * (n - 1)))))


def drift(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """Cosine between each row of ``before`` and the same row of ``after`` (float64).

    Rows must be matched by token id by the caller. A row that is bit-for-bit unchanged reads
    exactly 1.0; a zero-length row that changed reads 0.0.
    """
    import torch

    before, after = _as_tensor(before), _as_tensor(after)
    if before.shape != after.shape:
        shapes = f"{tuple(before.shape)} and {tuple(after.shape)}"
        raise ValueError(f"snapshots differ in shape: {shapes}")
    out = torch.empty(before.shape[0], dtype=torch.float64)
    for sl in _row_slices(before.shape[0], before.shape[1]):
        a, b = before[sl].double(), after[sl].double()
        denom = torch.linalg.vector_norm(a, dim=1) * torch.linalg.vector_norm(b, dim=1)
        cos = (a * b).sum(1) / denom.clamp_min(1e-300)
        cos = cos.clamp(-1.0, 1.0)
        cos[(before[sl] == after[sl]).all(dim=1)] = 1.0
        out[sl] = cos
    return out


def row_changes(before: torch.Tensor, after: torch.Tensor) -> dict[str, float | int]:
    """``{"changed_rows": rows not bit-for-bit equal, "max_abs_change": largest |after - before|
    over all entries}``, by row chunks."""
    before, after = _as_tensor(before), _as_tensor(after)
    if before.shape != after.shape:
        shapes = f"{tuple(before.shape)} and {tuple(after.shape)}"
        raise ValueError(f"snapshots differ in shape: {shapes}")
    changed, largest = 0, 0.0
    for sl in _row_slices(before.shape[0], before.shape[1]):
        a, b = before[sl], after[sl]
        changed += int((~(a == b).all(dim=1)).sum())
        if a.numel():
            largest = max(largest, float((a.double() - b.double()).abs().max()))
    return {"changed_rows": changed, "max_abs_change": largest}


def nearest_neighbours(
    queries: torch.Tensor, base: torch.Tensor, k: int, *, budget: int = _SIM_ELEMENTS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-``k`` cosine neighbours in ``base`` of each row of ``queries``.

    Returns ``(cosines, positions)``, both ``len(queries) x k``, best first; positions index
    the rows of ``base`` (map them to ids with the id list ``base`` was selected by). Computed
    in float32 by matrix products over blocks of queries, so at most ``budget`` similarities
    exist at once (the full queries x base matrix is never formed).
    """
    import torch

    queries, base = _as_tensor(queries).float(), _as_tensor(base).float()
    if queries.shape[1] != base.shape[1]:
        raise ValueError(f"hidden sizes differ: {queries.shape[1]} and {base.shape[1]}")
    k = min(k, base.shape[0])
    inv = torch.empty(base.shape[0], dtype=torch.float32)
    for sl in _row_slices(base.shape[0], base.shape[1]):
        inv[sl] = 1.0 / torch.linalg.vector_norm(base[sl], dim=1).clamp_min(1e-30)
    scores = torch.empty(queries.shape[0], k, dtype=torch.float32)
    positions = torch.empty(queries.shape[0], k, dtype=torch.long)
    for sl in _row_slices(queries.shape[0], base.shape[0], budget):
        q = torch.nn.functional.normalize(queries[sl], dim=1)
        sims = (q @ base.T).mul_(inv)
        top = sims.topk(k, dim=1)
        scores[sl], positions[sl] = top.values, top.indices
    return scores, positions


def neighbour_overlap(nn_before: torch.Tensor, nn_after: torch.Tensor) -> float:
    """Mean over query rows of |top-k before ∩ top-k after| / k (1.0: the same neighbours)."""
    a, b = _as_tensor(nn_before), _as_tensor(nn_after)
    if a.shape != b.shape:
        raise ValueError(f"neighbour lists differ in shape: {tuple(a.shape)} and {tuple(b.shape)}")
    if a.numel() == 0:
        return float("nan")
    shared = (a.unsqueeze(2) == b.unsqueeze(1)).any(dim=2).sum(dim=1)
    return float(shared.double().mean() / a.shape[1])


def pca_dims(
    x: torch.Tensor | Moments, thresholds: Sequence[float] = (0.9, 0.95)
) -> dict[str, int]:
    """Number of principal components needed to explain each share of the variance.

    Uses every eigenvalue of the hidden x hidden sample covariance (float64), so the count is
    not capped by any sample or component limit; with m rows it can reach at most m - 1 (the
    rank of the centred data), which is the true limit, not an artefact. Returns
    ``{"0.9": k, ...}``: the smallest k whose top-k eigenvalues reach the share. ``x`` may be
    the rows or their :class:`Moments`.
    """
    import torch

    vals = _covariance_eigenvalues(x)
    total = float(vals.sum())
    if total == 0.0:
        return {f"{t:g}": 0 for t in thresholds}
    share = torch.cumsum(vals, 0) / total
    out = {}
    for t in thresholds:
        if not 0.0 < t <= 1.0:
            raise ValueError(f"variance share must be in (0, 1], got {t}")
        k = int(torch.searchsorted(share, torch.tensor([t - 1e-12], dtype=torch.float64))[0]) + 1
        out[f"{t:g}"] = min(k, vals.numel())
    return out


def _pair_cosines(
    a: torch.Tensor, b: torch.Tensor, i: torch.Tensor, j: torch.Tensor
) -> torch.Tensor:
    import torch

    x, y = a.index_select(0, i).double(), b.index_select(0, j).double()
    denom = torch.linalg.vector_norm(x, dim=1) * torch.linalg.vector_norm(y, dim=1)
    return ((x * y).sum(1) / denom.clamp_min(1e-300)).clamp(-1.0, 1.0)


def _distinct_pairs(
    count: int, n: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """n pairs (i, j), i != j, uniform over ordered pairs of distinct rows."""
    import torch

    if count < 2:
        raise ValueError(f"need at least 2 rows to sample pairs, got {count}")
    i = torch.randint(0, count, (n,), generator=generator)
    j = (i + torch.randint(1, count, (n,), generator=generator)) % count
    return i, j


def pairwise_cosines(
    base: torch.Tensor, new: torch.Tensor, n: int, generator: torch.Generator
) -> dict[str, Any]:
    """Seeded samples of cosines between random pairs: base-base, new-new and base-new.

    Each sample has ``n`` pairs drawn with replacement from ``generator`` (pairs of distinct rows
    within a group). Returns ``{"n", "seed", "base_base", "new_new", "base_new", "ks"}``: the
    three samples as float64 tensors, the generator's initial seed, and the two-sample
    Kolmogorov-Smirnov test (scipy) of base-base against new-new as ``{"statistic", "pvalue"}``.
    """
    import torch
    from scipy import stats

    base, new = _as_tensor(base), _as_tensor(new)
    seed = int(generator.initial_seed())
    bb = _pair_cosines(base, base, *_distinct_pairs(base.shape[0], n, generator))
    nn = _pair_cosines(new, new, *_distinct_pairs(new.shape[0], n, generator))
    bi = torch.randint(0, base.shape[0], (n,), generator=generator)
    ni = torch.randint(0, new.shape[0], (n,), generator=generator)
    bn = _pair_cosines(base, new, bi, ni)
    ks = stats.ks_2samp(bb.numpy(), nn.numpy())
    return {
        "n": n,
        "seed": seed,
        "base_base": bb,
        "new_new": nn,
        "base_new": bn,
        "ks": {"statistic": float(ks.statistic), "pvalue": float(ks.pvalue)},
    }


def pip_loss(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pairwise-inner-product loss ||A A^T - B B^T||_F between two embeddings of the same rows.

    Computed without any rows x rows matrix, from
    ||A A^T - B B^T||_F^2 = ||A^T A||_F^2 + ||B^T B||_F^2 - 2 ||A^T B||_F^2, with the Gram
    matrices accumulated in float64 (the hidden sizes of A and B may differ). Identical inputs
    give exactly 0; otherwise cancellation limits the resolution to about 1e-8 of ||A^T A||_F.
    """
    return pip_from_grams(pip_grams(a, b))["pip"]


def pip_grams(a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{"aa": A^T A, "bb": B^T B, "ab": A^T B}`` in float64. Grams of disjoint row sets add
    up to the Gram of their union, so per-set results combine by summing."""
    import torch

    a, b = _as_tensor(a), _as_tensor(b)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"PIP loss compares the same rows: {a.shape[0]} and {b.shape[0]} rows")
    aa = _gram(a)
    if a.shape == b.shape and torch.equal(a, b):
        return {"aa": aa, "bb": aa, "ab": aa}  # exactly 0 below, not a cancellation residue
    return {"aa": aa, "bb": _gram(b), "ab": _gram(a, b)}


def pip_from_grams(grams: dict[str, torch.Tensor]) -> dict[str, float]:
    """``{"pip": ||AA^T - BB^T||_F, "relative": pip / ||AA^T||_F}`` from :func:`pip_grams`
    (``relative`` is NaN when A is all zeros; ||AA^T||_F equals ||A^T A||_F)."""
    aa = float(grams["aa"].square().sum())
    if grams["bb"] is grams["aa"] and grams["ab"] is grams["aa"]:
        sq = 0.0
    else:
        sq = aa + float(grams["bb"].square().sum()) - 2.0 * float(grams["ab"].square().sum())
    pip = math.sqrt(max(0.0, sq))
    scale = math.sqrt(aa)
    return {"pip": pip, "relative": pip / scale if scale > 0 else float("nan")}


def pip_stats(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """``{"pip", "relative"}`` for two embeddings of the same rows (see :func:`pip_loss`)."""
    return pip_from_grams(pip_grams(a, b))
