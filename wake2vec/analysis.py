"""Embedding-geometry measures as pure functions on row matrices (tensors).

Norms, isotropy (Mu et al. 2018; IsoScore), drift, nearest neighbours, intrinsic dimension,
pairwise cosines and PIP loss.

Every function takes row matrices (rows x hidden) already selected by token id (use
:func:`select_rows`); none of them selects rows by position. Large matrices are processed in row
chunks, so memory stays bounded at vocabulary scale (77,000 x 2,048 and beyond).

Precision: Gram and scatter matrices, means, norms and log-partition functions are summed in
float64. For float32 inputs the matrix products themselves are float32 over chunks of at most
2,048 rows (about 1e-6 relative rounding per chunk product), which halves their cost; float64
inputs get float64 products throughout. Against float64 products, the metrics of a 10,000-row,
hidden-1024 before/after pair moved by at most 5e-9 relative (Mu, IsoScore, PIP loss) and PCA
dimensions not at all. Symmetric Grams compute only the column blocks on and above the
diagonal. Every product runs on torch's intra-op threads
(``torch.set_num_threads``). torch, numpy and scipy are imported inside the functions.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

if TYPE_CHECKING:
    import torch

# Elements per float64 working chunk (32 MiB); similarity blocks use float32 (64 MiB).
_CHUNK_ELEMENTS = 1 << 22
_SIM_ELEMENTS = 1 << 24
# Column block of a symmetric Gram: blocks left of the diagonal are not computed.
_GRAM_BLOCK = 512
# Covariance eigenvalues of each live Moments instance (dropped with the instance).
_EIGENVALUES: WeakKeyDictionary[Moments, torch.Tensor] = WeakKeyDictionary()


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
        out[sl] = torch.linalg.vector_norm(x[sl], dim=1, dtype=torch.float64)
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


def _product_dtype(exact: bool, *xs: torch.Tensor) -> torch.dtype:
    """Chunk products: float64 when asked or when an input is float64, else float32."""
    import torch

    wide = exact or any(x.dtype == torch.float64 for x in xs)
    return torch.float64 if wide else torch.float32


def _add_gram(out: torch.Tensor, c: torch.Tensor, other: torch.Tensor | None = None) -> None:
    """``out += c^T other`` in float64; with ``other`` None, ``out += c^T c`` on the blocks on
    and above the diagonal only (callers mirror the result with :func:`_mirror`)."""
    if other is not None:
        out.add_(c.T @ other)  # a float32 product is widened as it is added
        return
    d = c.shape[1]
    for start in range(0, d, _GRAM_BLOCK):
        block = slice(start, min(d, start + _GRAM_BLOCK))
        out[block, start:].add_(c[:, block].T @ c[:, start:])


def _mirror(upper: torch.Tensor) -> torch.Tensor:
    """The symmetric matrix whose upper triangle (diagonal included) is that of ``upper``."""
    return upper.triu() + upper.triu(1).T


def _gram(
    a: torch.Tensor,
    b: torch.Tensor | None = None,
    *,
    exact: bool = True,
    shift: torch.Tensor | None = None,
) -> torch.Tensor:
    """a^T b (or a^T a, exactly symmetric) summed over row chunks in float64.

    ``exact``: each chunk's product in float64 (products of float32 entries are exact);
    otherwise float32 inputs multiply as float32 chunks (see the module docstring). ``shift``
    (a hidden-size vector) is subtracted from every row of ``a`` first (a^T a only).
    """
    import torch

    b_ = a if b is None else b
    if a.shape[0] != b_.shape[0]:
        raise ValueError(f"row counts differ: {a.shape[0]} and {b_.shape[0]}")
    dtype = _product_dtype(exact, a, b_)
    out = torch.zeros(a.shape[1], b_.shape[1], dtype=torch.float64)
    for sl in _row_slices(a.shape[0], max(a.shape[1], b_.shape[1])):
        ca = a[sl].to(dtype)
        if shift is not None:
            ca = ca - shift.to(dtype)
        _add_gram(out, ca, None if b is None else b_[sl].to(dtype))
    return out if b is not None else _mirror(out)


@dataclass(frozen=True, eq=False)
class Moments:
    """Row count, mean and centred scatter matrix (sum of outer products) of a row set, float64.

    Two row sets combine with :func:`merge_moments`, so the covariance of base + new rows costs
    nothing once each part is known. Immutable: the eigenvalues of one instance are computed
    once however often they are asked for (e.g. for unchanged base rows before and after).
    """

    n: int
    mean: torch.Tensor  # hidden
    scatter: torch.Tensor  # hidden x hidden


def moments(x: torch.Tensor, *, exact: bool = False) -> Moments:
    """:class:`Moments` of the rows of ``x``: the mean summed in float64, the scatter of the
    centred rows summed over row chunks in float64 (chunk products as in :func:`_gram`)."""
    x = _as_tensor(x)
    n = x.shape[0]
    mean = _column_sums(x) / max(n, 1)
    return Moments(n, mean, _gram(x, exact=exact, shift=mean))


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
    vals = _EIGENVALUES.get(m)
    if vals is None:
        vals = _EIGENVALUES[m] = torch.linalg.eigvalsh(m.scatter / (m.n - 1)).clamp_min(0).flip(0)
    return vals


def isotropy_mu(x: torch.Tensor) -> float:
    """Partition-function isotropy of Mu, Bhat and Viswanath (2018, "All-but-the-top").

    I(X) = min_c Z(c) / max_c Z(c), Z(c) = sum_i exp(c^T x_i), with c ranging over the unit
    eigenvectors of X^T X (both signs, since -c is an eigenvector whenever c is; this also makes
    the value independent of the sign convention of the eigensolver). X is used as given: not
    centred, not normalised, so the measure depends on the scale of the embeddings as in the
    paper. X^T X is taken as S + n m m^T from the rows' :class:`Moments` (scatter S, mean m;
    a sum of two positive semi-definite parts, so no cancellation); the projections c^T x_i are
    float32 products for float32 rows; log Z(c) is computed in float64 by log-sum-exp over row
    chunks, and the ratio is returned as exp(min log Z - max log Z), in [0, 1].
    """
    x = _as_tensor(x)
    if x.shape[0] == 0:
        raise ValueError("isotropy of an empty set of rows is undefined")
    return _mu(x, moments(x))


def _mu(x: torch.Tensor, m: Moments) -> float:
    import torch

    _, vecs = torch.linalg.eigh(m.scatter + m.n * m.mean.outer(m.mean))
    dtype = _product_dtype(False, x)
    dirs = vecs.to(dtype)
    d = dirs.shape[1]
    log_z = torch.full((2 * d,), -math.inf, dtype=torch.float64)  # c, then -c
    for sl in _row_slices(x.shape[0], d):
        proj = (x[sl].to(dtype) @ dirs).double()
        chunk = torch.cat([torch.logsumexp(proj, dim=0), torch.logsumexp(-proj, dim=0)])
        log_z = torch.logaddexp(log_z, chunk)
    return float(torch.exp(log_z.min() - log_z.max()))


def isotropy(x: torch.Tensor) -> dict[str, float]:
    """``{"mu": isotropy_mu(x), "isoscore": isoscore(x)}``, both from one :func:`moments` of
    the rows (one pass over them for the scatter matrix)."""
    x = _as_tensor(x)
    if x.shape[0] == 0:
        raise ValueError("isotropy of an empty set of rows is undefined")
    m = moments(x)
    return {"mu": _mu(x, m), "isoscore": isoscore(m)}


def _column_sums(x: torch.Tensor) -> torch.Tensor:
    """Column sums of ``x`` in float64, over row chunks."""
    import torch

    out = torch.zeros(x.shape[1], dtype=torch.float64)
    for sl in _row_slices(x.shape[0], x.shape[1]):
        out += x[sl].sum(0, dtype=torch.float64)
    return out


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
        same = (before[sl] == after[sl]).all(dim=1)
        if bool(same.all()):  # an untouched chunk (base rows after P1): nothing to compute
            out[sl] = 1.0
            continue
        a, b = before[sl].double(), after[sl].double()
        denom = torch.linalg.vector_norm(a, dim=1) * torch.linalg.vector_norm(b, dim=1)
        cos = (a * b).sum(1) / denom.clamp_min(1e-300)
        cos = cos.clamp(-1.0, 1.0)
        cos[same] = 1.0
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
        moved = int((~(a == b).all(dim=1)).sum())
        changed += moved
        if moved:  # |a - b| of float32 entries is exact in float64
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

    Computed without any rows x rows matrix (see :func:`pip_grams`). Identical inputs give
    exactly 0.
    """
    return pip_from_grams(pip_grams(a, b))["pip"]


def pip_grams(a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
    """Hidden x hidden matrices from which :func:`pip_from_grams` gives the PIP loss, float64.

    Same hidden size: ``{"aa": A^T A, "ad": A^T D, "dd": D^T D}`` with D = B - A, summed over the
    rows that changed only (rows equal in A and B add nothing), since
    ||AA^T - BB^T||_F^2 = 2<A^T A, D^T D> + 2<A^T D, D^T A> + 4<A^T D, D^T D> + ||D^T D||_F^2
    (<X, Y> the entrywise inner product): every term is of second order in D, so a small change
    is measured without the cancellation of ||A^T A||^2 + ||B^T B||^2 - 2||A^T B||^2, and float32
    chunk products suffice for float32 inputs. Other hidden sizes: ``{"aa": A^T A, "bb": B^T B,
    "ab": A^T B}`` (float64 products; the difference form, with resolution about 1e-8 of
    ||A^T A||_F). Either way Grams of disjoint row sets add up to those of their union, so
    per-set results combine by summing key by key.
    """
    import torch

    a, b = _as_tensor(a), _as_tensor(b)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"PIP loss compares the same rows: {a.shape[0]} and {b.shape[0]} rows")
    if a.shape[1] != b.shape[1]:
        return {"aa": _gram(a), "bb": _gram(b), "ab": _gram(a, b)}
    dtype = _product_dtype(False, a, b)
    d = a.shape[1]
    ad = torch.zeros(d, d, dtype=torch.float64)
    dd = torch.zeros(d, d, dtype=torch.float64)
    for sl in _row_slices(a.shape[0], d):
        ca = a[sl].to(dtype)
        diff = b[sl].to(dtype) - ca
        changed = (diff != 0).any(dim=1)
        if not bool(changed.any()):
            continue
        if not bool(changed.all()):
            ca, diff = ca[changed], diff[changed]
        _add_gram(ad, ca, diff)
        _add_gram(dd, diff)
    return {"aa": _gram(a, exact=False), "ad": ad, "dd": _mirror(dd)}


def pip_from_grams(grams: dict[str, torch.Tensor]) -> dict[str, float]:
    """``{"pip": ||AA^T - BB^T||_F, "relative": pip / ||AA^T||_F}`` from :func:`pip_grams`
    (``relative`` is NaN when A is all zeros; ||AA^T||_F equals ||A^T A||_F)."""
    aa = grams["aa"]
    if "dd" in grams:
        ad, dd = grams["ad"], grams["dd"]
        sq = float(
            2.0 * (aa * dd).sum()
            + 2.0 * (ad * ad.T).sum()
            + 4.0 * (ad * dd).sum()
            + dd.square().sum()
        )
    else:
        sq = float(
            aa.square().sum() + grams["bb"].square().sum() - 2.0 * grams["ab"].square().sum()
        )
    pip = math.sqrt(max(0.0, sq))
    scale = math.sqrt(float(aa.square().sum()))
    return {"pip": pip, "relative": pip / scale if scale > 0 else float("nan")}


def pip_stats(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """``{"pip", "relative"}`` for two embeddings of the same rows (see :func:`pip_loss`)."""
    return pip_from_grams(pip_grams(a, b))


class Memo:
    """Calls ``fn(x)`` once per distinct input: a later call with rows equal to rows already
    seen (same shape, dtype and values) returns the earlier result, e.g. for the base rows of a
    before and an after snapshot that P1 left untouched. Keeps references to the inputs it has
    seen; results are shared, so callers must not modify them."""

    def __init__(self) -> None:
        self._seen: list[tuple[Any, torch.Tensor, Any]] = []

    def __call__(self, fn: Any, x: torch.Tensor) -> Any:
        import torch

        for seen_fn, seen, result in self._seen:
            same_kind = seen_fn is fn and seen.shape == x.shape and seen.dtype == x.dtype
            if same_kind and (seen is x or torch.equal(seen, x)):
                return result
        result = fn(x)
        self._seen.append((fn, x, result))
        return result
