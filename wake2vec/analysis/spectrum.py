"""Embedding-geometry measures of a matrix's spectrum and pairs, as pure functions on row
matrices (see :mod:`wake2vec.analysis.geometry` for the conventions and precision): Gram and
moment accumulation, isotropy (Mu et al. 2018; IsoScore), PCA dimensions, pairwise cosines
with a KS test, and PIP loss."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from wake2vec.analysis.geometry import _as_tensor, _row_slices

if TYPE_CHECKING:
    import torch

# Column block of a symmetric Gram: blocks left of the diagonal are not computed.
_GRAM_BLOCK = 512
# Covariance eigenvalues of each live Moments instance (dropped with the instance).
_EIGENVALUES: WeakKeyDictionary[Moments, torch.Tensor] = WeakKeyDictionary()


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
